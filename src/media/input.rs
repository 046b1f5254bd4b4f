//! How an upload is named to ffmpeg and ffprobe: through the `file`
//! protocol only, and read only with the demuxers of real containers.

/// Demuxers an upload may be read with: containers and raw streams that hold
/// their pictures themselves. Playlists (hls, dash), concat scripts, image
/// sequences and the like make ffmpeg open other files or URLs, so they are
/// not on it, and an upload that probes as one of them is refused.
const DEMUXERS: &str = "mov,matroska,avi,mpegts,mpeg,mpegvideo,m4v,h264,hevc,flv,asf,ogg,mxf,\
nut,ivf,dv,yuv4mpegpipe,gif,rm,wtv";

/// The input as an ffmpeg/ffprobe argument: always through the `file`
/// protocol, so neither a leading `-` nor a `scheme:` in the path is read as
/// anything but a local file.
pub fn input_arg(input: &str) -> String {
    format!("file:{input}")
}

/// The options that confine ffmpeg or ffprobe to reading `input` itself,
/// then the input: local files only (no network protocol exists for it) and
/// only the demuxers of [`DEMUXERS`].
pub fn input_args(input: &str) -> [String; 6] {
    [
        "-protocol_whitelist".into(),
        "file".into(),
        "-format_whitelist".into(),
        DEMUXERS.into(),
        "-i".into(),
        input_arg(input),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_are_confined_to_a_local_file() {
        assert_eq!(input_arg("-x.mp4"), "file:-x.mp4");
        assert_eq!(input_arg("/up/x.mp4"), "file:/up/x.mp4");
        assert_eq!(input_arg("http://x/y"), "file:http://x/y");
        let args = input_args("/up/x");
        assert_eq!(args[..2], ["-protocol_whitelist", "file"]);
        assert_eq!(args[4..], ["-i", "file:/up/x"]);
    }
}
