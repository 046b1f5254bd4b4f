//! The text of each email.

use crate::db::outbox::{NewNotification, NotificationKind};

pub fn job_failed(filename: &str, reason: &str) -> NewNotification {
    NewNotification {
        kind: NotificationKind::JobFailed,
        subject: format!("We could not extract frames from {filename}"),
        body: format!(
            "Hello,\n\nprocessing your video \"{filename}\" failed:\n\n    {reason}\n\n\
             Nothing else is needed from you; you can delete the video or upload it again.\n\n\
             The Video Project\n"
        ),
    }
}

pub fn job_done(filename: &str) -> NewNotification {
    NewNotification {
        kind: NotificationKind::JobDone,
        subject: format!("Your frames of {filename} are ready"),
        body: format!(
            "Hello,\n\nthe frames of your video \"{filename}\" are ready to download.\n\nThe Video Project\n"
        ),
    }
}
