//! Every event GitHub documents as a workflow trigger, the keys each one
//! accepts under `on.<event>` and its activity types.
//!
//! Source: "Events that trigger workflows" and GitHub's workflow schema
//! (actions/languageservices `workflow-v1.0.json`).

/// What one event accepts.
pub(crate) struct EventSpec {
    pub name: &'static str,
    /// Keys allowed in its mapping; empty for events that take no options.
    pub keys: &'static [&'static str],
    /// Activity types for `types:`; `None` when any name is allowed
    /// (`repository_dispatch`) or the event has no `types`.
    pub types: Option<&'static [&'static str]>,
}

const TYPES: &[&str] = &["types"];
const PUSH: &[&str] = &[
    "branches",
    "branches-ignore",
    "tags",
    "tags-ignore",
    "paths",
    "paths-ignore",
];
const PULL_REQUEST: &[&str] = &[
    "types",
    "branches",
    "branches-ignore",
    "paths",
    "paths-ignore",
];

const CREATED_EDITED_DELETED: &[&str] = &["created", "edited", "deleted"];
const PULL_REQUEST_TYPES: &[&str] = &[
    "assigned",
    "unassigned",
    "labeled",
    "unlabeled",
    "opened",
    "edited",
    "closed",
    "reopened",
    "synchronize",
    "converted_to_draft",
    "locked",
    "unlocked",
    "enqueued",
    "dequeued",
    "milestoned",
    "demilestoned",
    "ready_for_review",
    "review_requested",
    "review_request_removed",
    "auto_merge_enabled",
    "auto_merge_disabled",
];

const fn plain(name: &'static str) -> EventSpec {
    EventSpec {
        name,
        keys: &[],
        types: None,
    }
}

const fn typed(name: &'static str, types: &'static [&'static str]) -> EventSpec {
    EventSpec {
        name,
        keys: TYPES,
        types: Some(types),
    }
}

pub(crate) const EVENTS: &[EventSpec] = &[
    typed("branch_protection_rule", CREATED_EDITED_DELETED),
    typed(
        "check_run",
        &["created", "rerequested", "completed", "requested_action"],
    ),
    typed("check_suite", &["completed"]),
    plain("create"),
    plain("delete"),
    plain("deployment"),
    plain("deployment_status"),
    typed(
        "discussion",
        &[
            "created",
            "edited",
            "deleted",
            "transferred",
            "pinned",
            "unpinned",
            "labeled",
            "unlabeled",
            "locked",
            "unlocked",
            "category_changed",
            "answered",
            "unanswered",
        ],
    ),
    typed("discussion_comment", CREATED_EDITED_DELETED),
    plain("fork"),
    plain("gollum"),
    EventSpec {
        name: "image_version",
        keys: &["types", "names", "versions"],
        types: Some(&["created", "ready", "deleted"]),
    },
    typed("issue_comment", CREATED_EDITED_DELETED),
    typed(
        "issues",
        &[
            "opened",
            "edited",
            "deleted",
            "transferred",
            "pinned",
            "unpinned",
            "closed",
            "reopened",
            "assigned",
            "unassigned",
            "labeled",
            "unlabeled",
            "locked",
            "unlocked",
            "milestoned",
            "demilestoned",
        ],
    ),
    typed("label", CREATED_EDITED_DELETED),
    EventSpec {
        name: "merge_group",
        keys: &["types", "branches", "branches-ignore"],
        types: Some(&["checks_requested"]),
    },
    typed(
        "milestone",
        &["created", "closed", "opened", "edited", "deleted"],
    ),
    plain("page_build"),
    typed(
        "project",
        &["created", "closed", "reopened", "edited", "deleted"],
    ),
    typed(
        "project_card",
        &["created", "moved", "converted", "edited", "deleted"],
    ),
    typed(
        "project_column",
        &["created", "updated", "moved", "deleted"],
    ),
    plain("public"),
    EventSpec {
        name: "pull_request",
        keys: PULL_REQUEST,
        types: Some(PULL_REQUEST_TYPES),
    },
    // Deprecated alias of `issue_comment`, still accepted.
    typed("pull_request_comment", CREATED_EDITED_DELETED),
    typed("pull_request_review", &["submitted", "edited", "dismissed"]),
    typed("pull_request_review_comment", CREATED_EDITED_DELETED),
    EventSpec {
        name: "pull_request_target",
        keys: PULL_REQUEST,
        types: Some(PULL_REQUEST_TYPES),
    },
    EventSpec {
        name: "push",
        keys: PUSH,
        types: None,
    },
    typed("registry_package", &["published", "updated"]),
    typed(
        "release",
        &[
            "published",
            "unpublished",
            "created",
            "edited",
            "deleted",
            "prereleased",
            "released",
        ],
    ),
    EventSpec {
        name: "repository_dispatch",
        keys: TYPES,
        types: None,
    },
    // `schedule`, `workflow_call` and `workflow_dispatch` have their own
    // shapes and are parsed separately; listed here so the name is known.
    plain("schedule"),
    plain("status"),
    typed("watch", &["started"]),
    EventSpec {
        name: "workflow_call",
        keys: &["inputs", "outputs", "secrets"],
        types: None,
    },
    EventSpec {
        name: "workflow_dispatch",
        keys: &["inputs"],
        types: None,
    },
    EventSpec {
        name: "workflow_run",
        keys: &["types", "workflows", "branches", "branches-ignore"],
        types: Some(&["requested", "completed", "in_progress"]),
    },
];

pub(crate) fn lookup(name: &str) -> Option<&'static EventSpec> {
    EVENTS.iter().find(|e| e.name == name)
}

pub(crate) fn names() -> impl Iterator<Item = &'static str> {
    EVENTS.iter().map(|e| e.name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_sorted() {
        let names: Vec<_> = names().collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(names, sorted);
        assert_eq!(names.len(), 37);
    }
}
