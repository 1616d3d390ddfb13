//! The job graph built from `needs:`: a deterministic order, a scheduler view
//! (which jobs may start now) and the closure used by `--job ID`.
//!
//! Like GitHub, a job becomes ready once every job it needs has *finished*,
//! whatever the result; whether it then runs or is skipped is its `if:`
//! (default `success()`), which the executor evaluates. The workflow parser
//! already reports unknown needs and cycles, but this module checks again and
//! returns errors rather than trusting its input.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum GraphError {
    #[error("job `{0}` is defined more than once")]
    DuplicateJob(String),
    #[error("job `{job}` needs `{need}`, which is not a job in this workflow")]
    UnknownNeed { job: String, need: String },
    #[error("jobs depend on each other in a cycle: {}", .0.join(" -> "))]
    Cycle(Vec<String>),
    #[error("no job `{0}` in this workflow")]
    UnknownJob(String),
    #[error("job `{0}` is not running")]
    NotRunning(String),
}

/// Jobs and their `needs`, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobGraph {
    ids: Vec<String>,
    index: HashMap<String, usize>,
    /// Per job, the jobs it needs (deduplicated, as written).
    needs: Vec<Vec<usize>>,
    /// Per job, the jobs that need it, in file order.
    dependents: Vec<Vec<usize>>,
    /// A topological order, ties broken by file order.
    order: Vec<usize>,
}

impl JobGraph {
    /// Builds the graph from `(job id, needs)` in file order, e.g.
    /// `workflow.jobs.iter().map(|(id, job)| (id.as_str(), job.needs.iter().map(|n| n.value.as_str())))`.
    pub fn new<'a, I, N>(jobs: I) -> Result<JobGraph, GraphError>
    where
        I: IntoIterator<Item = (&'a str, N)>,
        N: IntoIterator<Item = &'a str>,
    {
        let jobs: Vec<(&str, Vec<&str>)> = jobs
            .into_iter()
            .map(|(id, needs)| (id, needs.into_iter().collect()))
            .collect();
        let mut ids = Vec::with_capacity(jobs.len());
        let mut index = HashMap::with_capacity(jobs.len());
        for (id, _) in &jobs {
            if index.insert((*id).to_owned(), ids.len()).is_some() {
                return Err(GraphError::DuplicateJob((*id).to_owned()));
            }
            ids.push((*id).to_owned());
        }
        let mut needs = vec![Vec::new(); jobs.len()];
        let mut dependents = vec![Vec::new(); jobs.len()];
        for (job, (id, written)) in jobs.iter().enumerate() {
            for need in written {
                let Some(&n) = index.get(*need) else {
                    return Err(GraphError::UnknownNeed {
                        job: (*id).to_owned(),
                        need: (*need).to_owned(),
                    });
                };
                if !needs[job].contains(&n) {
                    needs[job].push(n);
                    dependents[n].push(job);
                }
            }
        }
        for list in &mut dependents {
            list.sort_unstable();
        }
        let mut graph = JobGraph {
            ids,
            index,
            needs,
            dependents,
            order: Vec::new(),
        };
        graph.order = graph.topological_sort()?;
        Ok(graph)
    }

    /// Kahn's algorithm, always taking the earliest job in the file among
    /// those ready, so the order is stable and reads like the file.
    fn topological_sort(&self) -> Result<Vec<usize>, GraphError> {
        let mut missing: Vec<usize> = self.needs.iter().map(Vec::len).collect();
        let mut ready: BinaryHeap<Reverse<usize>> = missing
            .iter()
            .enumerate()
            .filter(|(_, m)| **m == 0)
            .map(|(i, _)| Reverse(i))
            .collect();
        let mut order = Vec::with_capacity(self.ids.len());
        while let Some(Reverse(job)) = ready.pop() {
            order.push(job);
            for &dependent in &self.dependents[job] {
                missing[dependent] -= 1;
                if missing[dependent] == 0 {
                    ready.push(Reverse(dependent));
                }
            }
        }
        if order.len() == self.ids.len() {
            Ok(order)
        } else {
            Err(GraphError::Cycle(self.find_cycle(&missing)))
        }
    }

    /// A cycle among the jobs Kahn's algorithm could not order (each still
    /// misses a need that is itself unordered), as ids with the first
    /// repeated at the end.
    fn find_cycle(&self, missing: &[usize]) -> Vec<String> {
        let stuck = |j: usize| missing[j] > 0;
        let Some(start) = (0..self.ids.len()).find(|&j| stuck(j)) else {
            return Vec::new();
        };
        let mut path = vec![start];
        let mut position = HashMap::from([(start, 0usize)]);
        let mut current = start;
        // Every stuck job needs a stuck job, so this walk must revisit one.
        while let Some(&next) = self.needs[current].iter().find(|&&n| stuck(n)) {
            if let Some(&at) = position.get(&next) {
                let mut cycle: Vec<String> =
                    path[at..].iter().map(|&j| self.ids[j].clone()).collect();
                cycle.push(self.ids[next].clone());
                return cycle;
            }
            position.insert(next, path.len());
            path.push(next);
            current = next;
        }
        path.iter().map(|&j| self.ids[j].clone()).collect()
    }

    fn id(&self, job: usize) -> &str {
        &self.ids[job]
    }

    fn lookup(&self, id: &str) -> Result<usize, GraphError> {
        self.index
            .get(id)
            .copied()
            .ok_or_else(|| GraphError::UnknownJob(id.to_owned()))
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    pub fn contains(&self, id: &str) -> bool {
        self.index.contains_key(id)
    }

    /// Job ids in file order.
    pub fn jobs(&self) -> impl Iterator<Item = &str> {
        self.ids.iter().map(String::as_str)
    }

    /// The jobs `id` needs, deduplicated, as written.
    pub fn needs(&self, id: &str) -> Result<Vec<&str>, GraphError> {
        let job = self.lookup(id)?;
        Ok(self.needs[job].iter().map(|&n| self.id(n)).collect())
    }

    /// The jobs that need `id`, in file order.
    pub fn dependents(&self, id: &str) -> Result<Vec<&str>, GraphError> {
        let job = self.lookup(id)?;
        Ok(self.dependents[job].iter().map(|&d| self.id(d)).collect())
    }

    /// Every job after all the jobs it needs; among jobs free to go, file
    /// order.
    pub fn topological_order(&self) -> Vec<&str> {
        self.order.iter().map(|&j| self.id(j)).collect()
    }

    /// Jobs not in `done` whose needs are all in `done`, in file order. The
    /// caller removes those it has already started.
    pub fn ready<'g>(&'g self, done: &[&str]) -> Vec<&'g str> {
        let finished: Vec<bool> = self
            .ids
            .iter()
            .map(|id| done.contains(&id.as_str()))
            .collect();
        (0..self.ids.len())
            .filter(|&j| !finished[j] && self.needs[j].iter().all(|&n| finished[n]))
            .map(|j| self.id(j))
            .collect()
    }

    /// `targets` and every job they need, directly or not, in topological
    /// order: what `kiln run --job ID` runs.
    pub fn needs_closure(&self, targets: &[&str]) -> Result<Vec<&str>, GraphError> {
        let mut selected = vec![false; self.ids.len()];
        let mut stack = Vec::new();
        for target in targets {
            stack.push(self.lookup(target)?);
        }
        while let Some(job) = stack.pop() {
            if !selected[job] {
                selected[job] = true;
                stack.extend(&self.needs[job]);
            }
        }
        Ok(self
            .order
            .iter()
            .filter(|&&j| selected[j])
            .map(|&j| self.id(j))
            .collect())
    }

    /// The graph restricted to [`needs_closure`](Self::needs_closure) of
    /// `targets`, keeping file order.
    pub fn select(&self, targets: &[&str]) -> Result<JobGraph, GraphError> {
        let keep = self.needs_closure(targets)?;
        JobGraph::new(
            self.ids
                .iter()
                .enumerate()
                .filter(|(_, id)| keep.contains(&id.as_str()))
                .map(|(j, id)| {
                    let needs: Vec<&str> = self.needs[j].iter().map(|&n| self.id(n)).collect();
                    (id.as_str(), needs)
                }),
        )
    }

    /// A fresh scheduling state over this graph.
    pub fn schedule(&self) -> Schedule<'_> {
        Schedule {
            graph: self,
            state: vec![JobState::Pending; self.ids.len()],
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum JobState {
    Pending,
    Running,
    Done,
}

/// Tracks which jobs are pending, running and done, for a scheduler loop:
/// `start_ready` → run them → `finish` each → `start_ready` again, until
/// `is_complete`.
#[derive(Debug, Clone)]
pub struct Schedule<'g> {
    graph: &'g JobGraph,
    state: Vec<JobState>,
}

impl<'g> Schedule<'g> {
    /// Marks every pending job whose needs are done as running and returns
    /// them in file order.
    pub fn start_ready(&mut self) -> Vec<&'g str> {
        let graph = self.graph;
        let ready: Vec<usize> = (0..graph.ids.len())
            .filter(|&j| {
                self.state[j] == JobState::Pending
                    && graph.needs[j]
                        .iter()
                        .all(|&n| self.state[n] == JobState::Done)
            })
            .collect();
        for &j in &ready {
            self.state[j] = JobState::Running;
        }
        ready.into_iter().map(|j| graph.id(j)).collect()
    }

    /// Records that a running job has finished (with any result).
    pub fn finish(&mut self, id: &str) -> Result<(), GraphError> {
        let job = self.graph.lookup(id)?;
        if self.state[job] != JobState::Running {
            return Err(GraphError::NotRunning(id.to_owned()));
        }
        self.state[job] = JobState::Done;
        Ok(())
    }

    /// Jobs started and not yet finished, in file order.
    pub fn running(&self) -> Vec<&'g str> {
        self.in_state(JobState::Running)
    }

    /// Jobs not started yet, in file order.
    pub fn pending(&self) -> Vec<&'g str> {
        self.in_state(JobState::Pending)
    }

    fn in_state(&self, wanted: JobState) -> Vec<&'g str> {
        let graph = self.graph;
        (0..graph.ids.len())
            .filter(|&j| self.state[j] == wanted)
            .map(|j| graph.id(j))
            .collect()
    }

    /// Whether every job has finished.
    pub fn is_complete(&self) -> bool {
        self.state.iter().all(|s| *s == JobState::Done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(jobs: &[(&'static str, &[&'static str])]) -> Result<JobGraph, GraphError> {
        JobGraph::new(jobs.iter().map(|(id, needs)| (*id, needs.iter().copied())))
    }

    fn ok(jobs: &[(&'static str, &[&'static str])]) -> JobGraph {
        graph(jobs).expect("valid graph")
    }

    #[test]
    fn topological_order_breaks_ties_by_file_order() {
        let g = ok(&[
            ("deploy", &["test", "build"]),
            ("lint", &[]),
            ("test", &["build"]),
            ("build", &[]),
            ("docs", &[]),
        ]);
        assert_eq!(
            g.topological_order(),
            ["lint", "build", "test", "deploy", "docs"]
        );
    }

    #[test]
    fn independent_jobs_keep_file_order() {
        let g = ok(&[("c", &[]), ("a", &[]), ("b", &[])]);
        assert_eq!(g.topological_order(), ["c", "a", "b"]);
        assert_eq!(g.jobs().collect::<Vec<_>>(), ["c", "a", "b"]);
    }

    #[test]
    fn needs_and_dependents() {
        let g = ok(&[("a", &[]), ("b", &["a", "a"]), ("c", &["b", "a"])]);
        assert_eq!(g.needs("c"), Ok(vec!["b", "a"]));
        assert_eq!(g.needs("b"), Ok(vec!["a"]), "duplicates collapse");
        assert_eq!(g.dependents("a"), Ok(vec!["b", "c"]));
        assert_eq!(g.needs("zzz"), Err(GraphError::UnknownJob("zzz".into())));
        assert!(g.contains("a") && !g.contains("A"));
        assert_eq!(g.len(), 3);
    }

    #[test]
    fn ready_given_done_jobs() {
        let g = ok(&[("a", &[]), ("b", &[]), ("c", &["a"]), ("d", &["a", "b"])]);
        assert_eq!(g.ready(&[]), ["a", "b"]);
        assert_eq!(g.ready(&["a"]), ["b", "c"]);
        assert_eq!(g.ready(&["a", "b"]), ["c", "d"]);
        assert_eq!(g.ready(&["a", "b", "c", "d"]), Vec::<&str>::new());
    }

    #[test]
    fn schedule_runs_everything_once_in_dependency_order() {
        let g = ok(&[
            ("build", &[]),
            ("lint", &[]),
            ("test", &["build"]),
            ("release", &["test", "lint"]),
        ]);
        let mut s = g.schedule();
        assert_eq!(s.start_ready(), ["build", "lint"]);
        assert_eq!(
            s.start_ready(),
            Vec::<&str>::new(),
            "nothing new until a finish"
        );
        assert_eq!(s.finish("lint"), Ok(()));
        assert_eq!(
            s.start_ready(),
            Vec::<&str>::new(),
            "release still needs test"
        );
        s.finish("build").expect("running");
        assert_eq!(s.start_ready(), ["test"]);
        assert_eq!(s.running(), ["test"]);
        assert_eq!(s.pending(), ["release"]);
        s.finish("test").expect("running");
        assert_eq!(s.start_ready(), ["release"]);
        assert!(!s.is_complete());
        s.finish("release").expect("running");
        assert!(s.is_complete());
    }

    #[test]
    fn schedule_rejects_bad_finishes() {
        let g = ok(&[("a", &[]), ("b", &["a"])]);
        let mut s = g.schedule();
        assert_eq!(s.finish("b"), Err(GraphError::NotRunning("b".into())));
        assert_eq!(s.finish("x"), Err(GraphError::UnknownJob("x".into())));
        s.start_ready();
        s.finish("a").expect("running");
        assert_eq!(s.finish("a"), Err(GraphError::NotRunning("a".into())));
    }

    #[test]
    fn empty_graph() {
        let g = ok(&[]);
        assert!(g.is_empty());
        assert!(g.schedule().is_complete());
        assert_eq!(g.topological_order(), Vec::<&str>::new());
    }

    #[test]
    fn unknown_needs_and_duplicates_are_errors() {
        assert_eq!(
            graph(&[("a", &["nope"])]),
            Err(GraphError::UnknownNeed {
                job: "a".into(),
                need: "nope".into()
            })
        );
        assert_eq!(
            graph(&[("a", &[]), ("a", &[])]),
            Err(GraphError::DuplicateJob("a".into()))
        );
    }

    #[test]
    fn cycles_are_reported_with_their_path() {
        assert_eq!(
            graph(&[("a", &["a"])]),
            Err(GraphError::Cycle(vec!["a".into(), "a".into()]))
        );
        let err = graph(&[
            ("ok", &[]),
            ("x", &["ok", "z"]),
            ("y", &["x"]),
            ("z", &["y"]),
            ("after", &["z"]),
        ])
        .expect_err("cycle");
        assert_eq!(
            err,
            GraphError::Cycle(vec!["x".into(), "z".into(), "y".into(), "x".into()])
        );
        assert_eq!(
            err.to_string(),
            "jobs depend on each other in a cycle: x -> z -> y -> x"
        );
    }

    #[test]
    fn needs_closure_for_job_selection() {
        let g = ok(&[
            ("setup", &[]),
            ("lint", &[]),
            ("build", &["setup"]),
            ("test", &["build"]),
            ("docs", &["setup"]),
        ]);
        assert_eq!(
            g.needs_closure(&["test"]),
            Ok(vec!["setup", "build", "test"])
        );
        assert_eq!(g.needs_closure(&["lint"]), Ok(vec!["lint"]));
        assert_eq!(
            g.needs_closure(&["docs", "test"]),
            Ok(vec!["setup", "build", "test", "docs"])
        );
        assert_eq!(
            g.needs_closure(&["nope"]),
            Err(GraphError::UnknownJob("nope".into()))
        );
        let selected = g.select(&["test"]).expect("valid selection");
        assert_eq!(
            selected.jobs().collect::<Vec<_>>(),
            ["setup", "build", "test"]
        );
        assert_eq!(selected.needs("test"), Ok(vec!["build"]));
        assert!(!selected.contains("docs"));
    }
}
