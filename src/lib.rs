//! The Video Project: users upload videos and get back a zip of their frames.
//!
//! # Layout
//! The path of an upload through the tree:
//!
//! 1. [`http`] — the API. `http::connections` admits each connection and
//!    holds it to its deadlines; `http::upload` reads the form within its
//!    deadlines and byte budgets, hands its file to the [`upload`] service
//!    and answers.
//! 2. [`upload`] admits it (the user's backlog and quota, a place on this
//!    node), streams it into the [`storage`] media store and has [`media`]
//!    probe it with ffprobe; a non-video, or a video over the job budget
//!    (`media::budget`), is refused, nothing kept.
//! 3. [`upload`] commits the job `uploading → queued` ([`jobs`] holds the
//!    state machine, [`db`] all SQL) and wakes the [`processor`] pool.
//! 4. [`processor`] claims the job with a lease, plans the frames and runs
//!    ffmpeg through [`media`], streaming the images into a zip in [`storage`].
//! 5. Completion or failure is one transaction with its outbox row; the
//!    [`notify`] actor emails the user.
//! 6. `http::videos`, `http::events` (one feed per user, woken by the
//!    change feed) and `http::download` show status and serve the zip.
//!
//! Around them: [`supervisor`] starts and restarts the actors, [`cluster`]
//! joins the node to its peers (wake-ups, cancels, taking over the jobs of a
//! node that died), [`accounts`] verifies addresses and resets passwords
//! through links sent by email, [`auth`] says who is calling, [`domain`] parses what
//! clients send, [`settings`] and [`cli`] are the operating contract,
//! [`app`] wires a node together. Reads a node repeats are kept in memory
//! ([`budgeted`]) until `db::changes`, PostgreSQL's notifications, says
//! they changed.

pub mod accounts;
pub mod admin;
pub mod app;
pub mod auth;
pub mod budgeted;
pub mod cli;
pub mod cluster;
pub mod db;
pub mod domain;
pub mod http;
pub mod i18n;
pub mod jobs;
pub mod media;
pub mod notify;
pub mod processor;
pub mod retry_after;
pub mod settings;
pub mod storage;
pub mod supervisor;
pub mod telemetry;
pub mod tls;
pub mod upload;
