//! Checks across fields, on the typed model: job and step ids unique,
//! `needs` naming real jobs, and no dependency cycles. All linear in the
//! number of jobs, steps and `needs` entries.

use std::collections::HashMap;

use indexmap::IndexMap;

use crate::model::{Action, Job, Runs, Step, Workflow};
use crate::parse::Ctx;
use crate::span::{Span, Spanned};
use crate::suggest::did_you_mean;

pub(crate) fn workflow(ctx: &mut Ctx, wf: &Workflow) {
    unique_ids(ctx, wf.jobs.values().map(|j| &j.id), "job id");
    for job in wf.jobs.values() {
        unique_step_ids(ctx, &job.steps);
    }
    unknown_needs(ctx, &wf.jobs);
    needs_cycles(ctx, &wf.jobs);
}

pub(crate) fn action(ctx: &mut Ctx, action: &Action) {
    if let Runs::Composite { steps } = &action.runs {
        unique_step_ids(ctx, steps);
    }
}

fn unique_step_ids(ctx: &mut Ctx, steps: &[Step]) {
    unique_ids(ctx, steps.iter().filter_map(|s| s.id.as_ref()), "step id");
}

/// GitHub compares ids case-insensitively (`Build` clashes with `build`).
fn unique_ids<'a>(ctx: &mut Ctx, ids: impl Iterator<Item = &'a Spanned<String>>, what: &str) {
    let mut seen: HashMap<String, usize> = HashMap::new();
    for id in ids {
        let line = id.span.start.line;
        if let Some(first) = seen.insert(id.value.to_ascii_lowercase(), line) {
            ctx.error(
                id.span,
                format!("duplicate {what} \"{}\" (first used on line {first}; ids are case-insensitive)", id.value),
            );
            seen.insert(id.value.to_ascii_lowercase(), first);
        }
    }
}

fn unknown_needs(ctx: &mut Ctx, jobs: &IndexMap<String, Job>) {
    for job in jobs.values() {
        for need in &job.needs {
            if !jobs.contains_key(&need.value) {
                let hint = did_you_mean(&need.value, jobs.keys().map(String::as_str));
                ctx.error(
                    need.span,
                    format!(
                        "job \"{}\" needs unknown job \"{}\"{hint}",
                        job.id.value, need.value
                    ),
                );
            }
        }
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Visit {
    New,
    /// On the DFS stack at this depth.
    Active(usize),
    Done,
}

/// Reports every `needs` edge that closes a cycle, naming the whole cycle.
/// Iterative depth-first search: O(jobs + needs), no recursion limit.
fn needs_cycles(ctx: &mut Ctx, jobs: &IndexMap<String, Job>) {
    let edges: Vec<Vec<(usize, Span)>> = jobs
        .values()
        .map(|job| {
            job.needs
                .iter()
                .filter_map(|n| jobs.get_index_of(&n.value).map(|i| (i, n.span)))
                .collect()
        })
        .collect();
    let name = |i: usize| jobs.get_index(i).map_or("", |(k, _)| k.as_str());
    let mut visit = vec![Visit::New; edges.len()];
    for root in 0..edges.len() {
        if visit[root] != Visit::New {
            continue;
        }
        let mut stack: Vec<(usize, usize)> = vec![(root, 0)];
        visit[root] = Visit::Active(0);
        while let Some(top) = stack.last_mut() {
            let (node, next) = *top;
            let Some(&(to, span)) = edges[node].get(next) else {
                visit[node] = Visit::Done;
                stack.pop();
                continue;
            };
            top.1 += 1;
            match visit[to] {
                Visit::New => {
                    visit[to] = Visit::Active(stack.len());
                    stack.push((to, 0));
                }
                Visit::Active(depth) => {
                    let mut path: Vec<&str> =
                        stack[depth..].iter().map(|&(n, _)| name(n)).collect();
                    path.push(name(to));
                    ctx.error(span, format!("job dependency cycle: {}", path.join(" -> ")));
                }
                Visit::Done => {}
            }
        }
    }
}
