//! Any body as an upload form, read by the node's own form reader with its
//! byte budgets and deadlines: it never panics, and it either reads the
//! form or refuses it with a documented status (400, 408, 413, 422). A
//! refused upload's body is not parsed at all (it is drained raw), so this
//! reader is what a hostile body meets. The parsers of the fields have
//! targets of their own (`frame_options`, `filename`).
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    })
}

fuzz_target!(|body: &[u8]| {
    let read = runtime().block_on(videoproject::http::fuzzing::read_upload_form(body));
    if let Err(status) = read {
        assert!([400, 408, 413, 422].contains(&status), "status {status}");
    }
});
