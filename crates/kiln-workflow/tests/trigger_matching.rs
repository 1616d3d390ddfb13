//! Trigger matching against GitHub's documented examples.
//!
//! Sources (docs.github.com, read from github/docs):
//! - *Workflow syntax for GitHub Actions*: "Filter pattern cheat sheet",
//!   `on.push.<branches|tags|branches-ignore|tags-ignore>`,
//!   `on.<pull_request|pull_request_target>.<branches|branches-ignore>`,
//!   `on.<push|pull_request|pull_request_target>.<paths|paths-ignore>`,
//!   `on.workflow_run.<branches|branches-ignore>`, `on.<event_name>.types`.
//! - *Events that trigger workflows*: default activity types, `workflow_run`.
//!
//! The doc wording each row relies on is quoted in `doc`. `Triggers` are
//! built directly from the model types, independent of the parser.

use kiln_workflow::filter::PatternList;
use kiln_workflow::trigger::{Event, MAX_DIFF_FILES, evaluate};
use kiln_workflow::{EventConfig, Spanned, Triggers};

/// `(key, patterns)` pairs of one event, keys spelled as in YAML.
type Filters<'a> = &'a [(&'a str, &'a [&'a str])];

fn list(items: &[&str]) -> Option<Vec<Spanned<String>>> {
    Some(
        items
            .iter()
            .map(|s| Spanned::new((*s).to_owned(), Default::default()))
            .collect(),
    )
}

fn config(filters: Filters) -> EventConfig {
    let mut c = EventConfig::default();
    for (key, items) in filters {
        let slot = match *key {
            "types" => &mut c.types,
            "branches" => &mut c.branches,
            "branches-ignore" => &mut c.branches_ignore,
            "tags" => &mut c.tags,
            "tags-ignore" => &mut c.tags_ignore,
            "paths" => &mut c.paths,
            "paths-ignore" => &mut c.paths_ignore,
            "workflows" => &mut c.workflows,
            other => panic!("unknown filter key {other}"),
        };
        *slot = list(items);
    }
    c
}

fn on(events: &[(&str, Filters)]) -> Triggers {
    let mut t = Triggers::default();
    for (name, filters) in events {
        t.events.insert((*name).to_owned(), config(filters));
    }
    t
}

// ---------------------------------------------------------------------------
// Filter pattern cheat sheet: every example, run through `PatternList` and
// through `evaluate` (branches and tags via a push of that ref, paths via a
// push changing that one file).
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug)]
enum Kind {
    /// "Patterns to match branches and tags".
    Ref,
    /// "Patterns to match file paths".
    Path,
}

struct PatternCase {
    kind: Kind,
    patterns: &'static [&'static str],
    input: &'static str,
    matches: bool,
    doc: &'static str,
}

const fn p(
    kind: Kind,
    patterns: &'static [&'static str],
    input: &'static str,
    matches: bool,
    doc: &'static str,
) -> PatternCase {
    PatternCase {
        kind,
        patterns,
        input,
        matches,
        doc,
    }
}

use Kind::{Path, Ref};

const STAR_REF: &str = "The `*` wildcard matches any character, but does not match slash (`/`).";
const DSTAR_REF: &str =
    "The `**` wildcard matches any character including slash (`/`) in branch and tag names.";
const EXACT: &str = "Matches the exact name of a branch or tag name.";
const STAR_ALL: &str = "Matches all branch and tag names that don't contain a slash (`/`).";
const DSTAR_ALL: &str = "Matches all branch and tag names. This is the default behavior when \
                         you don't use a `branches` or `tags` filter.";
const STAR_PREFIX: &str = "'*feature': When you start a pattern with `*`, you must use quotes.";
const V2: &str = "Matches branch and tag names that start with `v2`.";
const SEMVER: &str = "Matches all semantic versioning branches and tags with major version 1 or 2.";
const STAR_PATH: &str = "The `*` wildcard matches any character, but does not match slash (`/`).";
const JSX: &str = "The `?` character matches zero or one of the preceding character.";
const DSTAR_PATH: &str = "The `**` wildcard matches any character including slash (`/`). This \
                          is the default behavior when you don't use a `path` filter.";
const ROOT_JS: &str = "Matches all `.js` files at the root of the repository.";
const ALL_JS: &str = "Matches all `.js` files in the repository.";
const DOCS_STAR: &str =
    "All files within the root of the `docs` directory only, at the root of the repository.";
const DOCS_DSTAR: &str =
    "Any files in the `docs` directory and its subdirectories at the root of the repository.";
const DOCS_MD: &str = "A file with a `.md` suffix anywhere in the `docs` directory.";
const ANY_DOCS: &str = "Any files in a `docs` directory anywhere in the repository.";
const ANY_README: &str = "A README.md file anywhere in the repository.";
const SRC_SUFFIX: &str = "Any file in a folder with a `src` suffix anywhere in the repository.";
const POST: &str = "A file with the suffix `-post.md` anywhere in the repository.";
const MIGRATE: &str =
    "A file with the prefix `migrate-` and suffix `.sql` anywhere in the repository.";
const NEGATE: &str = "Using an exclamation mark (`!`) in front of a pattern negates it. When a \
                      file matches a pattern and also matches a negative pattern defined later \
                      in the file, the file will not be included.";
const REINCLUDE: &str = "Patterns are checked sequentially. A pattern that negates a previous \
                         pattern will re-include file paths.";
const MD_README: &[&str] = &["*.md", "!README.md"];
const MD_README_AGAIN: &[&str] = &["*.md", "!README.md", "README*"];

const CHEAT_SHEET: &[PatternCase] = &[
    // Bullet list above the tables.
    p(
        Ref,
        &["Octo*"],
        "Octocat",
        true,
        "For example, `Octo*` matches `Octocat`.",
    ),
    p(
        Ref,
        &["[CB]at"],
        "Cat",
        true,
        "`[CB]at` matches `Cat` or `Bat`",
    ),
    p(
        Ref,
        &["[CB]at"],
        "Bat",
        true,
        "`[CB]at` matches `Cat` or `Bat`",
    ),
    p(
        Ref,
        &["[1-2]00"],
        "100",
        true,
        "`[1-2]00` matches `100` and `200`",
    ),
    p(
        Ref,
        &["[1-2]00"],
        "200",
        true,
        "`[1-2]00` matches `100` and `200`",
    ),
    p(
        Ref,
        &["[0-9a-z]"],
        "7",
        true,
        "`[0-9a-z]` matches any digit or lowercase letter",
    ),
    p(
        Ref,
        &["[0-9a-z]"],
        "q",
        true,
        "`[0-9a-z]` matches any digit or lowercase letter",
    ),
    p(
        Ref,
        &["[0-9a-z]"],
        "Q",
        false,
        "`[0-9a-z]` matches any digit or lowercase letter",
    ),
    // Patterns to match branches and tags.
    p(Ref, &["feature/*"], "feature/my-branch", true, STAR_REF),
    p(Ref, &["feature/*"], "feature/your-branch", true, STAR_REF),
    p(
        Ref,
        &["feature/*"],
        "feature/beta-a/my-branch",
        false,
        STAR_REF,
    ),
    p(
        Ref,
        &["feature/**"],
        "feature/beta-a/my-branch",
        true,
        DSTAR_REF,
    ),
    p(Ref, &["feature/**"], "feature/your-branch", true, DSTAR_REF),
    p(
        Ref,
        &["feature/**"],
        "feature/mona/the/octocat",
        true,
        DSTAR_REF,
    ),
    p(
        Ref,
        &["main", "releases/mona-the-octocat"],
        "main",
        true,
        EXACT,
    ),
    p(
        Ref,
        &["main", "releases/mona-the-octocat"],
        "releases/mona-the-octocat",
        true,
        EXACT,
    ),
    p(
        Ref,
        &["main", "releases/mona-the-octocat"],
        "main-2",
        false,
        EXACT,
    ),
    p(Ref, &["*"], "main", true, STAR_ALL),
    p(Ref, &["*"], "releases", true, STAR_ALL),
    p(Ref, &["*"], "releases/10", false, STAR_ALL),
    p(Ref, &["**"], "all/the/branches", true, DSTAR_ALL),
    p(Ref, &["**"], "every/tag", true, DSTAR_ALL),
    p(Ref, &["*feature"], "mona-feature", true, STAR_PREFIX),
    p(Ref, &["*feature"], "feature", true, STAR_PREFIX),
    p(Ref, &["*feature"], "ver-10-feature", true, STAR_PREFIX),
    p(Ref, &["v2*"], "v2", true, V2),
    p(Ref, &["v2*"], "v2.0", true, V2),
    p(Ref, &["v2*"], "v2.9", true, V2),
    p(Ref, &["v2*"], "v1.0", false, V2),
    p(Ref, &["v[12].[0-9]+.[0-9]+"], "v1.10.1", true, SEMVER),
    p(Ref, &["v[12].[0-9]+.[0-9]+"], "v2.0.0", true, SEMVER),
    p(Ref, &["v[12].[0-9]+.[0-9]+"], "v3.0.0", false, SEMVER),
    // Patterns to match file paths.
    p(Path, &["*"], "README.md", true, STAR_PATH),
    p(Path, &["*"], "server.rb", true, STAR_PATH),
    p(Path, &["*"], "docs/README.md", false, STAR_PATH),
    p(Path, &["*.jsx?"], "page.js", true, JSX),
    p(Path, &["*.jsx?"], "page.jsx", true, JSX),
    p(Path, &["**"], "all/the/files.md", true, DSTAR_PATH),
    p(Path, &["*.js"], "app.js", true, ROOT_JS),
    p(Path, &["*.js"], "index.js", true, ROOT_JS),
    p(Path, &["*.js"], "js/index.js", false, ROOT_JS),
    p(Path, &["**.js"], "index.js", true, ALL_JS),
    p(Path, &["**.js"], "js/index.js", true, ALL_JS),
    p(Path, &["**.js"], "src/js/app.js", true, ALL_JS),
    p(Path, &["docs/*"], "docs/README.md", true, DOCS_STAR),
    p(Path, &["docs/*"], "docs/file.txt", true, DOCS_STAR),
    p(Path, &["docs/*"], "docs/mona/octocat.txt", false, DOCS_STAR),
    p(Path, &["docs/**"], "docs/README.md", true, DOCS_DSTAR),
    p(
        Path,
        &["docs/**"],
        "docs/mona/octocat.txt",
        true,
        DOCS_DSTAR,
    ),
    p(Path, &["docs/**"], "src/docs/a.md", false, DOCS_DSTAR),
    p(Path, &["docs/**/*.md"], "docs/README.md", true, DOCS_MD),
    p(
        Path,
        &["docs/**/*.md"],
        "docs/mona/hello-world.md",
        true,
        DOCS_MD,
    ),
    p(
        Path,
        &["docs/**/*.md"],
        "docs/a/markdown/file.md",
        true,
        DOCS_MD,
    ),
    p(Path, &["docs/**/*.md"], "docs/a/file.txt", false, DOCS_MD),
    p(Path, &["**/docs/**"], "docs/hello.md", true, ANY_DOCS),
    p(
        Path,
        &["**/docs/**"],
        "dir/docs/my-file.txt",
        true,
        ANY_DOCS,
    ),
    p(
        Path,
        &["**/docs/**"],
        "space/docs/plan/space.doc",
        true,
        ANY_DOCS,
    ),
    p(Path, &["**/README.md"], "README.md", true, ANY_README),
    p(Path, &["**/README.md"], "js/README.md", true, ANY_README),
    p(Path, &["**/*src/**"], "a/src/app.js", true, SRC_SUFFIX),
    p(
        Path,
        &["**/*src/**"],
        "my-src/code/js/app.js",
        true,
        SRC_SUFFIX,
    ),
    p(Path, &["**/*-post.md"], "my-post.md", true, POST),
    p(Path, &["**/*-post.md"], "path/their-post.md", true, POST),
    p(
        Path,
        &["**/migrate-*.sql"],
        "migrate-10909.sql",
        true,
        MIGRATE,
    ),
    p(
        Path,
        &["**/migrate-*.sql"],
        "db/migrate-v1.0.sql",
        true,
        MIGRATE,
    ),
    p(
        Path,
        &["**/migrate-*.sql"],
        "db/sept/migrate-v1.sql",
        true,
        MIGRATE,
    ),
    p(Path, MD_README, "hello.md", true, NEGATE),
    p(Path, MD_README, "README.md", false, NEGATE),
    p(Path, MD_README, "docs/hello.md", false, NEGATE),
    p(Path, MD_README_AGAIN, "hello.md", true, REINCLUDE),
    p(Path, MD_README_AGAIN, "README.md", true, REINCLUDE),
    p(Path, MD_README_AGAIN, "README.doc", true, REINCLUDE),
];

#[test]
fn cheat_sheet_examples() {
    let mut failures = Vec::new();
    for case in CHEAT_SHEET {
        let patterns = PatternList::new(case.patterns).expect("cheat sheet patterns are valid");
        let mut outcomes = vec![("PatternList", patterns.is_match(case.input))];
        match case.kind {
            Kind::Ref => {
                let push = on(&[("push", &[("branches", case.patterns)])]);
                let branch = evaluate(&push, &Event::push_branch(case.input));
                outcomes.push(("push branch", branch.runs));
                let push = on(&[("push", &[("tags", case.patterns)])]);
                let tag = evaluate(&push, &Event::push_tag(case.input));
                outcomes.push(("push tag", tag.runs));
            }
            Kind::Path => {
                let push = on(&[("push", &[("paths", case.patterns)])]);
                let event = Event::push_branch("main").with_changed_files([case.input]);
                outcomes.push(("push paths", evaluate(&push, &event).runs));
            }
        }
        for (via, got) in outcomes {
            if got != case.matches {
                failures.push(format!(
                    "{:?} vs {:?} via {via}: got {got}, want {} — {}",
                    case.patterns, case.input, case.matches, case.doc
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

// ---------------------------------------------------------------------------
// `on:` filters applied to events.
// ---------------------------------------------------------------------------

struct Case {
    doc: &'static str,
    on: Triggers,
    event: Event,
    runs: bool,
    /// A substring the decision's reason must contain ("" = not checked).
    reason: &'static str,
}

fn case(doc: &'static str, on: Triggers, event: Event, runs: bool) -> Case {
    Case {
        doc,
        on,
        event,
        runs,
        reason: "",
    }
}

impl Case {
    fn because(mut self, reason: &'static str) -> Case {
        self.reason = reason;
        self
    }
}

const PUSH_INCLUDE: &str = "the following workflow would run whenever there is a `push` event \
     to: A branch named `main`; A branch named `mona/octocat`; A branch whose name starts with \
     `releases/`, like `releases/10`; A tag named `v2`; A tag whose name starts with `v1.`, like \
     `v1.9.1`";
const PUSH_EXCLUDE: &str = "the following workflow would run whenever there is a `push` event, \
     unless the `push` event is to: A branch named `mona/octocat`; A branch whose name matches \
     `releases/**-alpha`, like `releases/beta/3-alpha`; A tag named `v2`; A tag whose name \
     starts with `v1.`, like `v1.9`";
const PUSH_ORDER: &str = "The following workflow will run on pushes to `releases/10` or \
     `releases/beta/mona`, but not on `releases/10-alpha` or `releases/beta/3-alpha` because \
     the negative pattern `!releases/**-alpha` follows the positive pattern.";
const UNDEFINED_REF: &str = "If you define only `tags`/`tags-ignore` or only \
     `branches`/`branches-ignore`, the workflow won't run for events affecting the undefined \
     Git ref.";
const NEITHER_REF: &str = "If you define neither `tags`/`tags-ignore` or \
     `branches`/`branches-ignore`, the workflow will run for events affecting either branches \
     or tags.";
const PR_INCLUDE: &str = "the following workflow would run whenever there is a `pull_request` \
     event for a pull request targeting: A branch named `main`; A branch named `mona/octocat`; \
     A branch whose name starts with `releases/`, like `releases/10`";
const PR_EXCLUDE: &str = "the following workflow would run whenever there is a `pull_request` \
     event unless the pull request is targeting: A branch named `mona/octocat`; A branch whose \
     name matches `releases/**-alpha`, like `releases/beta/3-alpha`";
const PR_ORDER: &str = "The following workflow will run on `pull_request` events for pull \
     requests that target `releases/10` or `releases/beta/mona`, but not for pull requests \
     that target `releases/10-alpha` or `releases/beta/3-alpha`";
const PR_DEFAULT_TYPES: &str = "By default, a workflow only runs when a `pull_request` event's \
     activity type is `opened`, `synchronize`, or `reopened`.";
const PRT_DEFAULT_TYPES: &str = "By default, a workflow only runs when a \
     `pull_request_target` event's activity type is `opened`, `synchronize`, or `reopened`.";
const TYPES: &str = "The `types` keyword enables you to narrow down activity that causes the \
     workflow to run.";
const LABEL_TYPES: &str = "For example, the `label` is triggered when a label is `created`, \
     `edited`, or `deleted`. on: label: types: [created, edited]";
const ALL_TYPES: &str = "Most GitHub events are triggered by more than one type of activity. \
     (Without `types`, every activity type of the event triggers the workflow.)";
const PATHS_PR: &str = "When using the `push` and `pull_request` events, you can configure a \
     workflow to run based on what file paths are changed.";
const INVALID: &str = "Kiln: a pattern that does not compile (here an unclosed '[') never \
     runs, and the reason names the key";
const PATHS_JS: &str = "If at least one path matches a pattern in the `paths` filter, the \
     workflow runs. For example, the following workflow would run anytime you push a \
     JavaScript file (`.js`).";
const PATHS_IGNORE: &str = "When all the path names match patterns in `paths-ignore`, the \
     workflow will not run. If any path names do not match patterns in `paths-ignore`, even if \
     some path names match the patterns, the workflow will run.";
const PATHS_ORDER: &str = "a push that changed `sub-project/index.js` or \
     `sub-project/src/index.js` will trigger a workflow run, but a push changing only \
     `sub-project/docs/readme.md` will not.";
const PATHS_TAGS: &str = "Path filters are not evaluated for pushes of tags.";
const NO_FILES: &str = "If there are no files changed, the workflow will not run.";
const NO_DIFF: &str = "If you push more than 1,000 commits, or if GitHub does not generate the \
     diff due to a timeout, the workflow will always run.";
const DIFF_LIMIT: &str = "Diffs are limited to 300 files. If there are files changed that \
     aren't matched in the first 300 files returned by the filter, the workflow will not run.";
const BOTH_FILTERS: &str = "If you define both `branches`/`branches-ignore` and \
     `paths`/`paths-ignore`, the workflow will only run when both filters are satisfied.";
const RUN_INCLUDE: &str = "a workflow with the following trigger will only run when the \
     workflow named `Build` runs on a branch whose name starts with `releases/`";
const RUN_EXCLUDE: &str = "A workflow with the following trigger will only run when the \
     workflow named `Build` runs on a branch that is not named `canary`";
const RUN_ORDER: &str = "will run when the workflow named `Build` runs on a branch that is \
     named `releases/10` or `releases/beta/mona` but will not `releases/10-alpha`, \
     `releases/beta/3-alpha`, or `main`.";
const RUN_MULTIPLE: &str = "If you specify multiple `workflows` for the `workflow_run` event, \
     only one of the workflows needs to run.";
const TRIGGER: &str = "To automatically trigger a workflow, use `on` to define which events can \
     cause the workflow to run.";

const IGNORED_BY: &str =
    "branch \"mona/octocat\" is ignored by \"mona/octocat\" in on.push.branches-ignore";
const EXCLUDED_BY: &str =
    "branch \"releases/10-alpha\" is excluded by \"!releases/**-alpha\" in on.push.branches";
const NOT_DEFAULT: &str = "activity type \"closed\" is not one of pull_request's default types";

// Shorthands for the workflows and events of the examples.

fn push_include() -> Triggers {
    let filters: Filters = &[
        ("branches", &["main", "mona/octocat", "releases/**"]),
        ("tags", &["v2", "v1.*"]),
    ];
    on(&[("push", filters)])
}

fn push_exclude() -> Triggers {
    let filters: Filters = &[
        ("branches-ignore", &["mona/octocat", "releases/**-alpha"]),
        ("tags-ignore", &["v2", "v1.*"]),
    ];
    on(&[("push", filters)])
}

const ORDERED: &[&str] = &["releases/**", "!releases/**-alpha"];

fn push(filters: Filters) -> Triggers {
    on(&[("push", filters)])
}

fn pr(filters: Filters) -> Triggers {
    on(&[("pull_request", filters)])
}

fn prt(filters: Filters) -> Triggers {
    on(&[("pull_request_target", filters)])
}

/// `workflow_run` of `Build`, `types: [requested]`, plus `branch_filters`.
fn run(branch_filters: Filters) -> Triggers {
    let mut filters: Vec<(&str, &[&str])> =
        vec![("workflows", &["Build"]), ("types", &["requested"])];
    filters.extend_from_slice(branch_filters);
    on(&[("workflow_run", &filters)])
}

fn push_files(files: &[&str]) -> Event {
    Event::push_branch("main").with_changed_files(files.iter().copied())
}

fn opened(base: &str) -> Event {
    Event::pull_request("opened", base)
}

fn build(action: &str, branch: &str) -> Event {
    Event::workflow_run("Build", action, branch)
}

/// `main.js` after `n` documentation files.
fn many_files(n: usize) -> Event {
    let docs = (0..n).map(|i| format!("docs/{i}.md"));
    Event::push_branch("main").with_changed_files(docs.chain(["main.js".to_owned()]))
}

fn push_cases() -> Vec<Case> {
    let tags_only: Filters = &[("tags", &["v*"])];
    vec![
        // on.push.<branches|tags>: including.
        case(
            PUSH_INCLUDE,
            push_include(),
            Event::push_branch("main"),
            true,
        ),
        case(
            PUSH_INCLUDE,
            push_include(),
            Event::push_branch("mona/octocat"),
            true,
        ),
        case(
            PUSH_INCLUDE,
            push_include(),
            Event::push_branch("releases/10"),
            true,
        ),
        case(PUSH_INCLUDE, push_include(), Event::push_tag("v2"), true),
        case(
            PUSH_INCLUDE,
            push_include(),
            Event::push_tag("v1.9.1"),
            true,
        ),
        case(
            PUSH_INCLUDE,
            push_include(),
            Event::push_branch("dev"),
            false,
        )
        .because("branch \"dev\" does not match on.push.branches"),
        case(PUSH_INCLUDE, push_include(), Event::push_tag("v3"), false)
            .because("tag \"v3\" does not match on.push.tags"),
        case(PUSH_INCLUDE, push_include(), Event::push_tag("main"), false).because("on.push.tags"),
        case(
            PUSH_INCLUDE,
            push_include(),
            Event::push_branch("v2"),
            false,
        )
        .because("on.push.branches"),
        // on.push.<branches-ignore|tags-ignore>.
        case(
            PUSH_EXCLUDE,
            push_exclude(),
            Event::push_branch("mona/octocat"),
            false,
        )
        .because(IGNORED_BY),
        case(
            PUSH_EXCLUDE,
            push_exclude(),
            Event::push_branch("releases/beta/3-alpha"),
            false,
        )
        .because("on.push.branches-ignore"),
        case(PUSH_EXCLUDE, push_exclude(), Event::push_tag("v2"), false)
            .because("on.push.tags-ignore"),
        case(PUSH_EXCLUDE, push_exclude(), Event::push_tag("v1.9"), false),
        case(
            PUSH_EXCLUDE,
            push_exclude(),
            Event::push_branch("main"),
            true,
        ),
        case(
            PUSH_EXCLUDE,
            push_exclude(),
            Event::push_branch("releases/10"),
            true,
        ),
        case(PUSH_EXCLUDE, push_exclude(), Event::push_tag("v3"), true),
        // Order of positive and negative patterns.
        case(
            PUSH_ORDER,
            push(&[("branches", ORDERED)]),
            Event::push_branch("releases/10"),
            true,
        ),
        case(
            PUSH_ORDER,
            push(&[("branches", ORDERED)]),
            Event::push_branch("releases/beta/mona"),
            true,
        ),
        case(
            PUSH_ORDER,
            push(&[("branches", ORDERED)]),
            Event::push_branch("releases/10-alpha"),
            false,
        )
        .because(EXCLUDED_BY),
        case(
            PUSH_ORDER,
            push(&[("branches", ORDERED)]),
            Event::push_branch("releases/beta/3-alpha"),
            false,
        ),
        // Which refs a push filter applies to.
        case(
            UNDEFINED_REF,
            push(&[("branches", ORDERED)]),
            Event::push_tag("releases/10"),
            false,
        )
        .because("filters only branches"),
        case(
            UNDEFINED_REF,
            push(tags_only),
            Event::push_branch("main"),
            false,
        )
        .because("filters only tags"),
        case(UNDEFINED_REF, push(tags_only), Event::push_tag("v1"), true),
        case(
            UNDEFINED_REF,
            push(&[("branches-ignore", &["dev"])]),
            Event::push_tag("v1"),
            false,
        ),
        case(NEITHER_REF, push(&[]), Event::push_branch("main"), true),
        case(NEITHER_REF, push(&[]), Event::push_tag("v1.0.0"), true),
    ]
}

fn pull_request_cases() -> Vec<Case> {
    let include: Filters = &[("branches", &["main", "mona/octocat", "releases/**"])];
    let exclude: Filters = &[("branches-ignore", &["mona/octocat", "releases/**-alpha"])];
    let from_feature = Event {
        git_ref: Some("refs/pull/7/merge".to_owned()),
        ..opened("main")
    };
    vec![
        // The base branch decides, in either spelling.
        case(PR_INCLUDE, pr(include), opened("main"), true),
        case(PR_INCLUDE, pr(include), opened("refs/heads/main"), true),
        case(PR_INCLUDE, pr(include), opened("mona/octocat"), true),
        case(PR_INCLUDE, pr(include), opened("releases/10"), true),
        case(PR_INCLUDE, pr(include), opened("dev"), false)
            .because("base branch \"dev\" does not match on.pull_request.branches"),
        case(PR_INCLUDE, pr(include), from_feature, true),
        case(PR_EXCLUDE, pr(exclude), opened("mona/octocat"), false)
            .because("on.pull_request.branches-ignore"),
        case(
            PR_EXCLUDE,
            pr(exclude),
            opened("releases/beta/3-alpha"),
            false,
        ),
        case(PR_EXCLUDE, pr(exclude), opened("main"), true),
        case(
            PR_ORDER,
            pr(&[("branches", ORDERED)]),
            opened("releases/10"),
            true,
        ),
        case(
            PR_ORDER,
            pr(&[("branches", ORDERED)]),
            opened("releases/beta/mona"),
            true,
        ),
        case(
            PR_ORDER,
            pr(&[("branches", ORDERED)]),
            opened("releases/10-alpha"),
            false,
        )
        .because("excluded by \"!releases/**-alpha\""),
        case(
            PR_ORDER,
            pr(&[("branches", ORDERED)]),
            opened("releases/beta/3-alpha"),
            false,
        ),
        case(
            PR_ORDER,
            prt(&[("branches", ORDERED)]),
            Event::pull_request_target("synchronize", "releases/10"),
            true,
        ),
        case(
            PR_ORDER,
            prt(&[("branches", ORDERED)]),
            Event::pull_request_target("synchronize", "releases/10-alpha"),
            false,
        )
        .because("on.pull_request_target.branches"),
    ]
}

fn type_cases() -> Vec<Case> {
    let opened_labeled: Filters = &[("types", &["opened", "labeled"])];
    let label = |types: Filters| on(&[("label", types)]);
    let label_event = |action: &str| Event::new("label").with_action(action);
    vec![
        case(PR_DEFAULT_TYPES, pr(&[]), opened("main"), true),
        case(
            PR_DEFAULT_TYPES,
            pr(&[]),
            Event::pull_request("synchronize", "main"),
            true,
        ),
        case(
            PR_DEFAULT_TYPES,
            pr(&[]),
            Event::pull_request("reopened", "main"),
            true,
        ),
        case(
            PR_DEFAULT_TYPES,
            pr(&[]),
            Event::pull_request("closed", "main"),
            false,
        )
        .because(NOT_DEFAULT),
        case(
            PR_DEFAULT_TYPES,
            pr(&[]),
            Event::pull_request("labeled", "main"),
            false,
        ),
        case(
            PRT_DEFAULT_TYPES,
            prt(&[]),
            Event::pull_request_target("closed", "main"),
            false,
        ),
        case(
            PRT_DEFAULT_TYPES,
            prt(&[]),
            Event::pull_request_target("reopened", "main"),
            true,
        ),
        case(
            TYPES,
            pr(opened_labeled),
            Event::pull_request("labeled", "main"),
            true,
        ),
        case(TYPES, pr(opened_labeled), opened("main"), true),
        case(
            TYPES,
            pr(opened_labeled),
            Event::pull_request("synchronize", "main"),
            false,
        )
        .because("activity type \"synchronize\" is not in on.pull_request.types"),
        case(
            TYPES,
            pr(&[("types", &["closed"])]),
            Event::pull_request("closed", "main"),
            true,
        ),
        case(
            LABEL_TYPES,
            label(&[("types", &["created", "edited"])]),
            label_event("created"),
            true,
        ),
        case(
            LABEL_TYPES,
            label(&[("types", &["created", "edited"])]),
            label_event("deleted"),
            false,
        ),
        case(ALL_TYPES, label(&[]), label_event("deleted"), true),
    ]
}

fn path_cases() -> Vec<Case> {
    let js: Filters = &[("paths", &["**.js"])];
    let docs_ignored: Filters = &[("paths-ignore", &["docs/**"])];
    let sub_project: Filters = &[("paths", &["sub-project/**", "!sub-project/docs/**"])];
    let src: Filters = &[("paths", &["src/**"])];
    vec![
        case(PATHS_JS, push(js), push_files(&["src/app.js"]), true),
        case(
            PATHS_JS,
            push(js),
            push_files(&["README.md", "lib/util.js"]),
            true,
        ),
        case(
            PATHS_JS,
            push(js),
            push_files(&["README.md", "docs/a.md"]),
            false,
        )
        .because("none of the 2 changed file(s) matches on.push.paths"),
        case(
            PATHS_IGNORE,
            push(docs_ignored),
            push_files(&["docs/guide.md"]),
            false,
        )
        .because("all 1 changed file(s) match on.push.paths-ignore"),
        case(
            PATHS_IGNORE,
            push(docs_ignored),
            push_files(&["docs/a.md", "src/main.rs"]),
            true,
        ),
        case(
            PATHS_IGNORE,
            push(docs_ignored),
            push_files(&["src/main.rs"]),
            true,
        ),
        case(
            PATHS_ORDER,
            push(sub_project),
            push_files(&["sub-project/index.js"]),
            true,
        ),
        case(
            PATHS_ORDER,
            push(sub_project),
            push_files(&["sub-project/src/index.js"]),
            true,
        ),
        case(
            PATHS_ORDER,
            push(sub_project),
            push_files(&["sub-project/docs/readme.md"]),
            false,
        ),
        case(
            PATHS_TAGS,
            push(js),
            Event::push_tag("v1").with_changed_files(["README.md"]),
            true,
        ),
        case(
            NO_FILES,
            push(&[("paths", &["**"])]),
            push_files(&[]),
            false,
        )
        .because("no files changed"),
        case(NO_FILES, push(docs_ignored), push_files(&[]), false),
        case(NO_DIFF, push(js), Event::push_branch("main"), true).because("changed files unknown"),
        case(DIFF_LIMIT, push(js), many_files(MAX_DIFF_FILES), false),
        case(DIFF_LIMIT, push(js), many_files(MAX_DIFF_FILES - 1), true),
        case(
            PATHS_PR,
            pr(src),
            opened("main").with_changed_files(["src/lib.rs"]),
            true,
        ),
        case(
            PATHS_PR,
            prt(src),
            Event::pull_request_target("opened", "main").with_changed_files(["docs/a.md"]),
            false,
        )
        .because("on.pull_request_target.paths"),
    ]
}

fn combined_cases() -> Vec<Case> {
    let main_js: Filters = &[("branches", &["main"]), ("paths", &["**.js"])];
    let main_not_docs: Filters = &[("branches", &["main"]), ("paths-ignore", &["docs/**"])];
    vec![
        case(BOTH_FILTERS, push(main_js), push_files(&["a.js"]), true),
        case(BOTH_FILTERS, push(main_js), push_files(&["a.md"]), false),
        case(
            BOTH_FILTERS,
            push(main_js),
            Event::push_branch("dev").with_changed_files(["a.js"]),
            false,
        )
        .because("branch \"dev\""),
        case(
            BOTH_FILTERS,
            pr(main_not_docs),
            opened("dev").with_changed_files(["src/a.rs"]),
            false,
        ),
        case(
            BOTH_FILTERS,
            pr(main_not_docs),
            opened("main").with_changed_files(["docs/a.md"]),
            false,
        ),
        case(
            BOTH_FILTERS,
            pr(main_not_docs),
            opened("main").with_changed_files(["src/a.rs"]),
            true,
        ),
    ]
}

fn workflow_run_cases() -> Vec<Case> {
    let include: Filters = &[("branches", &["releases/**"])];
    let exclude: Filters = &[("branches-ignore", &["canary"])];
    let ordered: Filters = &[("branches", ORDERED)];
    let staging_lab: Filters = &[
        ("workflows", &["Staging", "Lab"]),
        ("types", &["completed"]),
    ];
    let staging_lab = on(&[("workflow_run", staging_lab)]);
    vec![
        case(
            RUN_INCLUDE,
            run(include),
            build("requested", "releases/10"),
            true,
        ),
        case(RUN_INCLUDE, run(include), build("requested", "main"), false)
            .because("branch \"main\" does not match on.workflow_run.branches"),
        case(
            RUN_INCLUDE,
            run(include),
            build("completed", "releases/10"),
            false,
        )
        .because("on.workflow_run.types"),
        case(
            RUN_INCLUDE,
            run(include),
            Event::workflow_run("Test", "requested", "releases/10"),
            false,
        )
        .because("workflow \"Test\" is not in on.workflow_run.workflows"),
        case(
            RUN_EXCLUDE,
            run(exclude),
            build("requested", "canary"),
            false,
        )
        .because("on.workflow_run.branches-ignore"),
        case(RUN_EXCLUDE, run(exclude), build("requested", "main"), true),
        case(
            RUN_ORDER,
            run(ordered),
            build("requested", "releases/10"),
            true,
        ),
        case(
            RUN_ORDER,
            run(ordered),
            build("requested", "releases/beta/mona"),
            true,
        ),
        case(
            RUN_ORDER,
            run(ordered),
            build("requested", "releases/10-alpha"),
            false,
        ),
        case(
            RUN_ORDER,
            run(ordered),
            build("requested", "releases/beta/3-alpha"),
            false,
        ),
        case(RUN_ORDER, run(ordered), build("requested", "main"), false),
        case(
            RUN_MULTIPLE,
            staging_lab.clone(),
            Event::workflow_run("Lab", "completed", "main"),
            true,
        ),
        case(
            RUN_MULTIPLE,
            staging_lab,
            Event::workflow_run("Build", "completed", "main"),
            false,
        ),
    ]
}

fn other_cases() -> Vec<Case> {
    let bad: Filters = &[("branches", &["main", "release/v[0-9"])];
    vec![
        case(TRIGGER, push(&[]), opened("main"), false)
            .because("event \"pull_request\" is not listed under on"),
        case(
            TRIGGER,
            on(&[("push", &[]), ("pull_request", &[])]),
            opened("main"),
            true,
        ),
        case(
            TRIGGER,
            on(&[("schedule", &[])]),
            Event::new("schedule"),
            true,
        ),
        case(
            TRIGGER,
            on(&[("workflow_dispatch", &[])]),
            Event::new("workflow_dispatch"),
            true,
        ),
        case(
            TRIGGER,
            on(&[("workflow_dispatch", &[])]),
            Event::push_branch("main"),
            false,
        ),
        case(INVALID, push(bad), Event::push_branch("main"), false)
            .because("on.push.branches: invalid filter pattern \"release/v[0-9\""),
    ]
}

#[test]
fn trigger_examples() {
    let sections = [
        push_cases(),
        pull_request_cases(),
        type_cases(),
        path_cases(),
        combined_cases(),
        workflow_run_cases(),
        other_cases(),
    ];
    let mut failures = Vec::new();
    for (i, c) in sections.iter().flatten().enumerate() {
        let decision = evaluate(&c.on, &c.event);
        if decision.runs != c.runs || !decision.reason.contains(c.reason) {
            failures.push(format!(
                "row {i}: {:?} {:?}: got `{decision}`, want runs={} with reason containing \
                 {:?}\n    doc: {}",
                c.event.name,
                c.event.git_ref.as_deref().or(c.event.base_ref.as_deref()),
                c.runs,
                c.reason,
                c.doc
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
