//! A failure as recorded: its code (what the page translates and a program
//! branches on) and the words that stay beside it for "details".

pub use crate::domain::FailureCode;

#[derive(Debug, Clone, Copy)]
pub struct Failure<'a> {
    pub code: FailureCode,
    pub reason: &'a str,
}
