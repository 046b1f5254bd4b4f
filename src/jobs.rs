//! A job is one uploaded video on its way to a frames zip. Its state lives in
//! PostgreSQL (`db::jobs`); this module owns the rules it moves by.

mod state;

pub use state::{InvalidTransition, JobEvent, JobState, next};
