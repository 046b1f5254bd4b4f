//! Logs and metrics. Logs are `tracing` events, as text or (with
//! `VP_LOG_FORMAT=json`) one JSON object a line carrying the current spans,
//! so every line about a job has its `job_id`.

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

use crate::settings::LogFormat;

pub fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,ractor=warn,ractor_cluster=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// The process-wide Prometheus recorder (installed once).
pub fn metrics() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let handle = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    metrics_exporter_prometheus::Matcher::Full("vp_processing_seconds".into()),
                    &[
                        0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0,
                    ],
                )
                .expect("static buckets are valid")
                .set_buckets_for_metric(
                    metrics_exporter_prometheus::Matcher::Full("vp_http_request_seconds".into()),
                    &[
                        0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 60.0,
                    ],
                )
                .expect("static buckets are valid")
                .set_buckets_for_metric(
                    metrics_exporter_prometheus::Matcher::Full("vp_media_tool_seconds".into()),
                    &[
                        0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0, 600.0,
                    ],
                )
                .expect("static buckets are valid")
                .set_buckets_for_metric(
                    metrics_exporter_prometheus::Matcher::Full("vp_frames_per_second".into()),
                    &[0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0],
                )
                .expect("static buckets are valid")
                .install_recorder()
                .expect("metrics recorder installed once");
            let upkeep = handle.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(5));
                loop {
                    tick.tick().await;
                    upkeep.run_upkeep();
                }
            });
            handle
        })
        .clone()
}
