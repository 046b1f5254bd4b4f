//! The performance suite. Every scenario starts real nodes (the release
//! binary, its own database and media directory), measures what a client
//! waits for, and measures in the same run the baseline it is held to: bare
//! `ffmpeg` and `zip`, `dd` to the same disk, `/healthz` under the same load.
//! It prints one table (scenario, ours, baseline, ratio, target, pass) and
//! checks that the results are right: the frames of every zip are
//! byte-identical to the frames the bare commands made.
//!
//!   cargo bench --bench perf -- [--quick] [--reps N] [scenario…]
//!   (or bench/perf, which installs what the suite needs first)
//!
//! `--quick` uses small inputs and one repetition: it proves the suite works
//! and checks correctness, not speed (CI runs it). Without it the targets are
//! checked too; method and numbers are in docs/BENCHMARKS.md.

use videoproject_test_support as helpers;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio_postgres::Client;

use helpers::{Node, NodeConfig, TestApp, eventually, start_node};

/// Longest a scenario's jobs may take before the suite gives up.
const PATIENCE: Duration = Duration::from_secs(900);

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let reps = args
        .iter()
        .position(|a| a == "--reps")
        .and_then(|i| args.get(i + 1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(if quick { 1 } else { 3 });
    let all = [
        "dense", "sparse", "original", "many", "many3", "upload", "api",
    ];
    let named: Vec<&str> = args
        .iter()
        .map(String::as_str)
        .filter(|a| all.contains(a))
        .collect();
    let chosen = if named.is_empty() {
        all.to_vec()
    } else {
        named
    };
    let suite = Suite { quick, reps };
    println!("machine: {}", machine());
    let mut rows = Vec::new();
    for name in chosen {
        eprintln!("== {name}");
        let found = match name {
            "dense" => suite.dense().await,
            "sparse" => suite.sparse().await,
            "original" => suite.original().await,
            "many" => suite.many(1).await,
            "many3" => suite.many(3).await,
            "upload" => suite.upload().await,
            _ => suite.api().await,
        };
        for row in &found {
            eprintln!("   {}", row.line(quick));
        }
        rows.extend(found);
    }
    println!("\n{}", Row::header());
    for row in &rows {
        println!("{}", row.line(quick));
    }
    let missed: Vec<&str> = rows
        .iter()
        .filter(|r| !r.passed())
        .map(|r| r.scenario)
        .collect();
    if quick {
        println!("\nquick run: results checked, targets not judged");
    } else if missed.is_empty() {
        println!("\nevery target met");
    } else {
        println!("\ntargets MISSED: {missed:?}");
        std::process::exit(1);
    }
}

// ---------------------------------------------------------------- table

/// What a scenario's ratio (ours ÷ baseline) must be.
#[derive(Clone, Copy)]
enum Target {
    AtMost(f64),
    /// An absolute bound on ours (no baseline).
    Under(f64),
    /// Shown for what it tells, with no target.
    Shown,
}

struct Row {
    scenario: &'static str,
    ours: f64,
    baseline: Option<f64>,
    unit: &'static str,
    target: Target,
}

impl Row {
    /// A time against a baseline time, whose ratio must be at most `max`.
    fn seconds(scenario: &'static str, ours: f64, baseline: f64, max: f64) -> Self {
        Self {
            scenario,
            ours,
            baseline: Some(baseline),
            unit: "s",
            target: Target::AtMost(max),
        }
    }

    fn header() -> String {
        format!(
            "| {:<44} | {:>10} | {:>10} | {:>6} | {:>8} | {:<4} |\n|{}|{}|{}|{}|{}|{}|",
            "scenario",
            "ours",
            "baseline",
            "ratio",
            "target",
            "pass",
            "-".repeat(46),
            "-".repeat(12),
            "-".repeat(12),
            "-".repeat(8),
            "-".repeat(10),
            "-".repeat(6)
        )
    }

    fn ratio(&self) -> Option<f64> {
        self.baseline.map(|b| self.ours / b)
    }

    fn passed(&self) -> bool {
        match self.target {
            Target::AtMost(max) => self.ratio().is_some_and(|r| r <= max),
            Target::Under(max) => self.ours < max,
            Target::Shown => true,
        }
    }

    fn line(&self, quick: bool) -> String {
        let value = |v: f64| format!("{v:.3} {}", self.unit);
        let (ratio, target) = match self.target {
            Target::AtMost(max) => (
                self.ratio().map_or("—".into(), |r| format!("{r:.2}")),
                format!("≤ {max}"),
            ),
            Target::Under(max) => ("—".into(), format!("< {max} {}", self.unit)),
            Target::Shown => (
                self.ratio().map_or("—".into(), |r| format!("{r:.2}")),
                "—".into(),
            ),
        };
        let pass = match (quick, self.passed()) {
            (true, _) => "—",
            (false, true) => "yes",
            (false, false) => "NO",
        };
        format!(
            "| {:<44} | {:>10} | {:>10} | {:>6} | {:>8} | {:<4} |",
            self.scenario,
            value(self.ours),
            self.baseline.map_or("—".into(), value),
            ratio,
            target,
            pass
        )
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    assert!(n > 0, "no samples");
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_default();
    let ffmpeg = run_output("ffmpeg", &["-version"]);
    let ffmpeg = ffmpeg.lines().next().unwrap_or("ffmpeg ?");
    format!("{cores} cores ({model}); {ffmpeg}")
}

// ---------------------------------------------------------------- inputs

/// Generated inputs, kept between runs in the target directory.
fn inputs_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("bench-inputs");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn run_output(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn ffmpeg(args: &[&str]) {
    let mut all = vec!["-nostdin", "-loglevel", "error", "-y"];
    all.extend_from_slice(args);
    run_output("ffmpeg", &all);
}

/// An H.264 testsrc2 video of `secs` seconds at 25 fps. With `gop`, a
/// keyframe exactly every `gop` frames; long ones are a `unit`-second
/// piece repeated (stream copy), which decodes the same as one encoded
/// whole and takes seconds, not minutes, to make.
fn video(name: &str, size: &str, secs: u32, gop: Option<u32>) -> PathBuf {
    let path = inputs_dir().join(name);
    if path.exists() {
        return path;
    }
    let partial = inputs_dir().join(format!("partial-{name}"));
    let unit = if secs > 60 && secs.is_multiple_of(60) {
        60
    } else {
        secs
    };
    let piece = inputs_dir().join(format!("piece-{name}"));
    let src = format!("testsrc2=size={size}:rate=25");
    let t = unit.to_string();
    let mut args = vec!["-f", "lavfi", "-i", &src, "-t", &t];
    args.extend([
        "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p",
    ]);
    let g = gop.map(|g| g.to_string());
    if let Some(g) = &g {
        args.extend(["-g", g, "-keyint_min", g, "-sc_threshold", "0"]);
    }
    args.push(piece.to_str().unwrap());
    ffmpeg(&args);
    let list = inputs_dir().join(format!("list-{name}.txt"));
    let line = format!("file '{}'\n", piece.display());
    std::fs::write(&list, line.repeat((secs / unit) as usize)).unwrap();
    ffmpeg(&[
        "-f",
        "concat",
        "-safe",
        "0",
        "-i",
        list.to_str().unwrap(),
        "-c",
        "copy",
        "-f",
        "mp4",
        partial.to_str().unwrap(),
    ]);
    std::fs::rename(&partial, &path).unwrap();
    let _ = std::fs::remove_file(piece);
    let _ = std::fs::remove_file(list);
    path
}

/// Uncompressed 1080p video (yuv4mpeg) of about `mib` MiB: a big upload
/// that costs nothing to make.
fn raw_video(mib: u64) -> PathBuf {
    let path = inputs_dir().join(format!("raw-{mib}.y4m"));
    if !path.exists() {
        let frames = (mib << 20) / (1920 * 1080 * 3 / 2) + 1;
        let partial = inputs_dir().join("partial-raw.y4m");
        ffmpeg(&[
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=1920x1080:rate=25",
            "-frames:v",
            &frames.to_string(),
            "-pix_fmt",
            "yuv420p",
            "-f",
            "yuv4mpegpipe",
            partial.to_str().unwrap(),
        ]);
        std::fs::rename(&partial, &path).unwrap();
    }
    path
}

// ---------------------------------------------------------------- baselines

/// The image options the node uses, so the bare commands make the same bytes.
const IMAGE_ARGS: [&str; 6] = ["-pix_fmt", "yuvj420p", "-q:v", "2", "-f", "image2"];

fn timed(f: impl FnOnce()) -> f64 {
    let start = Instant::now();
    f();
    start.elapsed().as_secs_f64()
}

fn zip_dir(dir: &Path) {
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path().display().to_string())
        .filter(|p| p.ends_with(".jpg"))
        .collect();
    files.sort();
    let zip = dir.join("frames.zip");
    let mut args = vec!["-0", "-q", "-j", zip.to_str().unwrap()];
    args.extend(files.iter().map(String::as_str));
    run_output("zip", &args);
}

/// Frames made by a bare command, in time order.
fn frames_in(dir: &Path) -> Vec<Vec<u8>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "jpg"))
        .collect();
    files.sort();
    files.iter().map(|p| std::fs::read(p).unwrap()).collect()
}

/// Bare single pass: `ffmpeg -vf fps=…` into files, then `zip -0`; with
/// `threads`, decoder, filters and encoder get that many threads.
fn bare_single_pass(input: &Path, millis: u32, threads: Option<usize>) -> (f64, Vec<Vec<u8>>) {
    let dir = tempfile::tempdir().unwrap();
    let pattern = dir.path().join("%05d.jpg");
    let vf = format!("fps=1000/{millis}:round=up");
    let threads = threads.map(|t| t.to_string());
    let secs = timed(|| {
        let mut args = vec![];
        if let Some(t) = &threads {
            args.extend(["-filter_threads", t, "-threads", t]);
        }
        args.extend(["-i", input.to_str().unwrap(), "-vf", &vf]);
        if let Some(t) = &threads {
            args.extend(["-threads", t]);
        }
        args.extend(IMAGE_ARGS);
        args.push(pattern.to_str().unwrap());
        ffmpeg(&args);
        zip_dir(dir.path());
    });
    (secs, frames_in(dir.path()))
}

/// Bare seek loop, the original design: one `ffmpeg -ss T -i … -frames:v 1`
/// per timestamp, one after another, then `zip -0`.
fn bare_seek_loop(input: &Path, timestamps: &[f64]) -> (f64, Vec<Vec<u8>>) {
    let dir = tempfile::tempdir().unwrap();
    let secs = timed(|| {
        for (k, t) in timestamps.iter().enumerate() {
            let out = dir.path().join(format!("{k:05}.jpg"));
            let t = format!("{t:.3}");
            let mut args = vec!["-ss", &t, "-i", input.to_str().unwrap(), "-frames:v", "1"];
            args.extend(IMAGE_ARGS);
            args.push(out.to_str().unwrap());
            ffmpeg(&args);
        }
        zip_dir(dir.path());
    });
    (secs, frames_in(dir.path()))
}

/// `dd` of `input` into `dir` with `conv=fsync`; seconds.
fn bare_dd(input: &Path, dir: &Path) -> f64 {
    let out = dir.join("dd.bin");
    let secs = timed(|| {
        run_output(
            "dd",
            &[
                &format!("if={}", input.display()),
                &format!("of={}", out.display()),
                "bs=1M",
                "conv=fsync",
                "status=none",
            ],
        );
    });
    std::fs::remove_file(out).unwrap();
    secs
}

// ---------------------------------------------------------------- our side

fn workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// What the suite's one user may do at once: the scenarios measure a
/// node's throughput, not one user's share of it.
const ONE_USER_AT_ONCE: &str = "max_uploads_per_user = 64\n";

/// A node as deployed: as many workers as cores.
fn deployed() -> NodeConfig {
    NodeConfig {
        workers: workers(),
        ..NodeConfig::tuned(ONE_USER_AT_ONCE)
    }
}

async fn node() -> (TestApp, String) {
    node_with(deployed()).await
}

async fn node_with(config: NodeConfig) -> (TestApp, String) {
    let app = TestApp::spawn_with(config, false).await;
    let token = signed_in(&app, "bench@example.com").await;
    (app, token)
}

async fn signed_in(app: &TestApp, email: &str) -> String {
    app.user(email).await;
    app.sign_in(email).await
}

/// Uploads `file` streaming it from disk (a 1 GiB upload is never in
/// memory) to the node at `base`; the video id.
async fn upload(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    file: &Path,
    fields: &[(&str, String)],
) -> String {
    let f = tokio::fs::File::open(file).await.unwrap();
    let len = f.metadata().await.unwrap().len();
    let body =
        reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::with_capacity(f, 256 << 10));
    let name = file.file_name().unwrap().to_string_lossy().into_owned();
    let mut form = reqwest::multipart::Form::new();
    for (k, v) in fields {
        form = form.text(k.to_string(), v.clone());
    }
    form = form.part(
        "video",
        reqwest::multipart::Part::stream_with_length(body, len).file_name(name),
    );
    let r = http
        .post(format!("{base}/api/v1/videos"))
        .bearer_auth(token)
        .multipart(form)
        .send()
        .await
        .unwrap();
    let status = r.status();
    let body: Value = r.json().await.unwrap();
    assert_eq!(status, 202, "upload refused: {body}");
    body["video"]["id"].as_str().unwrap().to_owned()
}

/// When a job entered `state` (seconds on the database's clock).
async fn entered(db: &Client, id: &str, state: &str) -> f64 {
    let id: uuid::Uuid = id.parse().unwrap();
    db.query_one(
        "SELECT extract(epoch FROM max(at))::float8 FROM job_events
         WHERE job_id = $1 AND to_state::text = $2",
        &[&id, &state],
    )
    .await
    .unwrap()
    .get::<_, Option<f64>>(0)
    .unwrap_or_else(|| panic!("job {id} never entered {state}"))
}

/// Waits until no job is waiting or running; fails on a job that failed.
async fn settled(db: &Client) {
    eventually("every job to finish", PATIENCE, || async {
        let row = db
            .query_one(
                "SELECT count(*) FILTER (WHERE state IN ('uploading', 'queued', 'processing')),
                        count(*) FILTER (WHERE state <> 'done'),
                        string_agg(error, '; ')
                 FROM jobs",
                &[],
            )
            .await
            .unwrap();
        let (open, not_done): (i64, i64) = (row.get(0), row.get(1));
        assert!(
            open > 0 || not_done == 0,
            "jobs did not succeed: {:?}",
            row.get::<_, Option<String>>(2)
        );
        (open == 0).then_some(())
    })
    .await;
}

/// The frames of a finished video's zip, in order, after checking its
/// manifest: the planned timestamps and the strategy.
async fn our_frames(
    app: &TestApp,
    token: &str,
    id: &str,
    timestamps: &[f64],
    strategy: &str,
) -> Vec<Vec<u8>> {
    let bytes = app.download(token, id).await;
    let (names, manifest) = helpers::zip_contents(&bytes);
    assert_eq!(manifest["strategy"], strategy, "{manifest}");
    let listed: Vec<f64> = manifest["frames"]
        .as_array()
        .expect("manifest frames")
        .iter()
        .map(|f| f["timestamp"].as_f64().unwrap())
        .collect();
    assert_eq!(listed, timestamps, "the frames' timestamps");
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
    names
        .iter()
        .filter(|n| n.ends_with(".jpg"))
        .map(|n| {
            let mut data = Vec::new();
            std::io::Read::read_to_end(&mut zip.by_name(n).unwrap(), &mut data).unwrap();
            data
        })
        .collect()
}

fn same_frames(what: &str, ours: &[Vec<u8>], bare: &[Vec<u8>]) {
    assert_eq!(ours.len(), bare.len(), "{what}: frame counts");
    for (k, (a, b)) in ours.iter().zip(bare).enumerate() {
        assert!(a == b, "{what}: frame {k} differs from the bare command's");
    }
}

fn every(millis: u32, secs: u32) -> Vec<f64> {
    (0..secs * 1000)
        .step_by(millis as usize)
        .map(|t| f64::from(t) / 1000.0)
        .collect()
}

// ---------------------------------------------------------------- scenarios

struct Suite {
    quick: bool,
    reps: usize,
}

/// One video at one interval: ours (202 → done) against a bare command.
struct Extraction {
    scenario: &'static str,
    input: PathBuf,
    secs: u32,
    millis: u32,
    strategy: &'static str,
    /// The ratio to meet.
    target: f64,
}

impl Suite {
    /// Ours for `e`, `reps` times, each beside a run of `bare` (alternating,
    /// so a slower minute of the machine hits both); medians.
    async fn extraction(&self, e: &Extraction, bare: impl Fn() -> (f64, Vec<Vec<u8>>)) -> Vec<Row> {
        let (app, token) = node().await;
        let db = app.db.client().await;
        let fields = [("interval", format!("{}", f64::from(e.millis) / 1000.0))];
        let timestamps = every(e.millis, e.secs);
        let base = app.url("");
        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        for _ in 0..self.reps {
            let (secs, bare_frames) = bare();
            theirs.push(secs);
            let id = upload(&app.http, &base, &token, &e.input, &fields).await;
            settled(&db).await;
            ours.push(entered(&db, &id, "done").await - entered(&db, &id, "queued").await);
            let frames = our_frames(&app, &token, &id, &timestamps, e.strategy).await;
            same_frames("extraction", &frames, &bare_frames);
            app.delete_video(&token, &id).await;
        }
        vec![Row::seconds(
            e.scenario,
            median(ours),
            median(theirs),
            e.target,
        )]
    }

    /// Scenario 1: a frame a second of a 60 s 720p video, against
    /// `ffmpeg -vf fps=1` + `zip -0`.
    async fn dense(&self) -> Vec<Row> {
        let (size, secs) = if self.quick {
            ("320x240", 6)
        } else {
            ("1280x720", 60)
        };
        let e = Extraction {
            scenario: "1 dense: 60 s 720p, 1 fps (202 → done)",
            input: video(&format!("dense-{size}-{secs}.mp4"), size, secs, None),
            secs,
            millis: 1000,
            strategy: "singlepass",
            target: 1.15,
        };
        self.extraction(&e, || bare_single_pass(&e.input, e.millis, None))
            .await
    }

    /// A 1080p video with a keyframe every 250 frames (`secs` long, or
    /// `quick_secs` at 640x360), a frame every 20 s.
    fn sparse_input(
        &self,
        scenario: &'static str,
        secs: u32,
        quick_secs: u32,
        target: f64,
    ) -> Extraction {
        let (size, secs) = if self.quick {
            ("640x360", quick_secs)
        } else {
            ("1920x1080", secs)
        };
        Extraction {
            scenario,
            input: video(&format!("gop250-{size}-{secs}.mp4"), size, secs, Some(250)),
            secs,
            millis: 20_000,
            strategy: "seekeach",
            target,
        }
    }

    /// Scenario 2: a frame every 20 s of a 5 min 1080p video, against the
    /// faster of a bare seek loop and a bare single pass.
    async fn sparse(&self) -> Vec<Row> {
        let e = self.sparse_input("2 sparse: 5 min 1080p, every 20 s", 300, 60, 1.15);
        let timestamps = every(e.millis, e.secs);
        self.extraction(&e, || {
            let (seek_secs, seek_frames) = bare_seek_loop(&e.input, &timestamps);
            let (pass_secs, pass_frames) = bare_single_pass(&e.input, e.millis, None);
            same_frames("seek loop and single pass", &seek_frames, &pass_frames);
            eprintln!("   bare seek loop {seek_secs:.3} s, bare single pass {pass_secs:.3} s");
            (seek_secs.min(pass_secs), seek_frames)
        })
        .await
    }

    /// Scenario 6: a frame every 20 s of a 10 min 1080p video with GOP 250,
    /// against the original design's loop of one seek per frame.
    async fn original(&self) -> Vec<Row> {
        let e = self.sparse_input(
            "6 vs original: 10 min 1080p GOP 250, every 20 s",
            600,
            120,
            0.5,
        );
        let timestamps = every(e.millis, e.secs);
        self.extraction(&e, || bare_seek_loop(&e.input, &timestamps))
            .await
    }

    /// Scenario 3: Sixteen videos submitted together (to `nodes` nodes, round robin),
    /// first upload to last `done`, against the sum of their one-core bare
    /// times ÷ cores: the time of perfect scaling.
    async fn many(&self, nodes: usize) -> Vec<Row> {
        let (size, secs, count) = if self.quick {
            ("320x240", 5, 4)
        } else {
            ("1280x720", 20, 16)
        };
        let input = video(&format!("many-{size}-{secs}.mp4"), size, secs, None);
        let configs = cluster(nodes);
        let (app, token) = node_with(configs[0].clone()).await;
        let extra: Vec<Node> = configs[1..]
            .iter()
            .map(|c| start_node(&app.db.url, app.media.path(), c))
            .collect();
        let bases: Vec<String> = std::iter::once(app.url(""))
            .chain(extra.iter().map(|n| format!("http://{}", n.addr)))
            .collect();
        let db = app.db.client().await;
        let fields = [("interval", "1".to_owned())];
        let timestamps = every(1000, secs);
        let (mut ours, mut ideal) = (Vec::new(), Vec::new());
        for _ in 0..self.reps {
            let mut bare = 0.0;
            let mut bare_frames = Vec::new();
            for _ in 0..count {
                let (s, f) = bare_single_pass(&input, 1000, Some(1));
                bare += s;
                bare_frames = f;
            }
            ideal.push(bare / workers() as f64);
            let uploads = (0..count).map(|k| {
                let (http, base, token, input) = (&app.http, &bases[k % nodes], &token, &input);
                let fields = &fields;
                async move { upload(http, base, token, input, fields).await }
            });
            let ids = futures::future::join_all(uploads).await;
            settled(&db).await;
            let uuids: Vec<uuid::Uuid> = ids.iter().map(|id| id.parse().unwrap()).collect();
            let row = db
                .query_one(
                    "SELECT extract(epoch FROM max(e.at) - min(j.created_at))::float8,
                            count(DISTINCT e.node)
                     FROM jobs j JOIN job_events e ON e.job_id = j.id AND e.to_state = 'done'
                     WHERE j.id = ANY($1)",
                    &[&uuids],
                )
                .await
                .unwrap();
            let (secs, ran_on): (f64, i64) = (row.get(0), row.get(1));
            eprintln!("   {secs:.3} s on {ran_on} node(s); one-core bare runs {bare:.3} s in all");
            ours.push(secs);
            for id in &ids {
                let frames = our_frames(&app, &token, id, &timestamps, "singlepass").await;
                same_frames("many", &frames, &bare_frames);
                app.delete_video(&token, id).await;
            }
        }
        let (ours, ideal) = (median(ours), median(ideal));
        let scenario = if nodes == 1 {
            "3 many: 16 × 20 s 720p at once, one node"
        } else {
            "3 many: 16 × 20 s 720p at once, three nodes"
        };
        vec![Row::seconds(scenario, ours, ideal, 1.1)]
    }

    /// Scenario 4: A 1 GiB upload over loopback (send → 202), against `dd conv=fsync`
    /// of the same bytes to the same disk; the node's memory stays flat.
    async fn upload(&self) -> Vec<Row> {
        let mib = if self.quick { 64 } else { 1024 };
        let input = raw_video(mib);
        let (app, token) = node().await;
        let base = app.url("");
        let db = app.db.client().await;
        let rss_before = app.node.peak_rss_kib();
        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        for _ in 0..self.reps {
            theirs.push(bare_dd(&input, app.media.path()));
            let start = Instant::now();
            let id = upload(&app.http, &base, &token, &input, &[("count", "1".into())]).await;
            ours.push(start.elapsed().as_secs_f64());
            settled(&db).await;
            app.delete_video(&token, &id).await;
        }
        let growth_mib = app.node.peak_rss_kib().saturating_sub(rss_before) / 1024;
        eprintln!("   peak RSS grew by {growth_mib} MiB over {mib} MiB uploads");
        assert!(growth_mib < 64, "memory is not flat: +{growth_mib} MiB");
        let size = input.metadata().unwrap().len() as f64 / f64::from(1 << 20);
        let (ours, bare) = (median(ours), median(theirs));
        eprintln!(
            "   {:.0} MiB/s against dd's {:.0} MiB/s",
            size / ours,
            size / bare
        );
        vec![Row::seconds(
            "4 upload: 1 GiB over loopback (time, dd = 1)",
            ours,
            bare,
            2.0,
        )]
    }

    /// Scenario 5: Listing 50 of a user's 10 000 videos against `/healthz`, each under
    /// the same concurrent load; and the wake-up from 202 to `processing`.
    async fn api(&self) -> Vec<Row> {
        let videos = if self.quick { 1_000 } else { 10_000 };
        let (app, token) = node().await;
        let db = app.db.client().await;
        db.execute(
            "INSERT INTO jobs (id, user_id, filename, state, options, max_attempts, created_at)
             SELECT gen_random_uuid(), u.id, 'v' || g || '.mp4', 'done', '{}', 3,
                    now() - make_interval(secs => g)
             FROM users u, generate_series(1, $1::bigint) g",
            &[&i64::from(videos)],
        )
        .await
        .unwrap();
        let load = if self.quick {
            Duration::from_secs(2)
        } else {
            Duration::from_secs(10)
        };
        let list = "/api/v1/videos?limit=50";
        let page = app.get_json(&token, list).await;
        assert_eq!(page["videos"].as_array().unwrap().len(), 50);
        assert!(page["next_cursor"].is_string());
        let health = latency_under_load(&app, None, &["/healthz".into()], load).await;
        let listing = latency_under_load(&app, Some(&token), &[list.into()], load).await;
        // every request another page: none of them kept in memory yet
        let pages: Vec<String> = db
            .query(
                "SELECT (extract(epoch FROM created_at) * 1000000)::bigint || '.' || id
                 FROM jobs ORDER BY created_at DESC, id DESC",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| format!("{list}&cursor={}", r.get::<_, String>(0)))
            .collect();
        let fresh = latency_under_load(&app, Some(&token), &pages, load).await;

        let input = video("wake-320x240-2.mp4", "320x240", 2, None);
        let base = app.url("");
        let mut wake = Vec::new();
        for _ in 0..if self.quick { 3 } else { 9 } {
            let id = upload(&app.http, &base, &token, &input, &[("count", "1".into())]).await;
            settled(&db).await;
            wake.push(
                (entered(&db, &id, "processing").await - entered(&db, &id, "queued").await)
                    * 1000.0,
            );
        }
        vec![
            Row {
                scenario: "5 api: list 50 of 10 000 (p50, healthz = 1)",
                ours: listing * 1000.0,
                baseline: Some(health * 1000.0),
                unit: "ms",
                target: Target::AtMost(3.0),
            },
            Row {
                scenario: "5 api: the same, a new page each time",
                ours: fresh * 1000.0,
                baseline: Some(health * 1000.0),
                unit: "ms",
                target: Target::Shown,
            },
            Row {
                scenario: "5 api: wake-up 202 → processing, idle node",
                ours: median(wake),
                baseline: None,
                unit: "ms",
                target: Target::Under(100.0),
            },
        ]
    }
}

/// `n` deployed nodes forming one cluster (one node: no cluster). Several
/// nodes on this one machine share its cores, as a compose file would set them.
fn cluster(n: usize) -> Vec<NodeConfig> {
    if n == 1 {
        return vec![deployed()];
    }
    let cores = Path::new(env!("CARGO_TARGET_TMPDIR")).join("bench-cores");
    let on_one_machine = NodeConfig::tuned(&format!(
        "shared_cores_dir = \"{}\"\n{ONE_USER_AT_ONCE}",
        cores.display()
    ));
    let base = NodeConfig {
        config_toml: on_one_machine.config_toml,
        ..deployed()
    };
    helpers::cluster_configs(n, base, "bench-cluster")
}

/// Median latency of GETs (seconds) while 8 clients request back to back
/// for `load`, going through `paths` in turn (client `c` starts at the
/// `c`-th, and each takes every 8th).
async fn latency_under_load(
    app: &TestApp,
    token: Option<&str>,
    paths: &[String],
    load: Duration,
) -> f64 {
    let until = Instant::now() + load;
    let clients = (0..8).map(|c| async move {
        let mut times = Vec::new();
        let mut next = c;
        while Instant::now() < until {
            let path = &paths[next % paths.len()];
            next += 8;
            let mut req = app.http.get(app.url(path));
            if let Some(t) = token {
                req = req.bearer_auth(t);
            }
            let start = Instant::now();
            let r = req.send().await.unwrap();
            let status = r.status();
            r.bytes().await.unwrap();
            assert_eq!(status, 200, "{path}");
            times.push(start.elapsed().as_secs_f64());
        }
        times
    });
    let all: Vec<f64> = futures::future::join_all(clients)
        .await
        .into_iter()
        .flatten()
        .collect();
    let path = paths[0].split('&').next().unwrap_or_default();
    eprintln!(
        "   {path} ({} paths): {} requests in {load:?}",
        paths.len(),
        all.len()
    );
    median(all)
}
