//! Parse time of generated workflows of growing size, to show the parser
//! stays linear: the time per byte should not grow with the file.
//!
//! `cargo bench -p kiln-workflow` prints one line per size.

use std::fmt::Write as _;
use std::time::Instant;

/// A workflow with `jobs` jobs, each needing the previous one, with a
/// matrix and five steps carrying expressions and block scalars.
fn workflow(jobs: usize) -> String {
    let mut s = String::from("name: bench\non:\n  push:\n    branches: [main]\njobs:\n");
    for i in 0..jobs {
        let _ = write!(s, "  job{i}:\n    runs-on: ${{{{ matrix.os }}}}\n");
        if i > 0 {
            let _ = writeln!(s, "    needs: [job{}]", i - 1);
        }
        s.push_str("    strategy:\n      matrix:\n        os: [ubuntu-latest, macos-latest]\n");
        s.push_str("    env:\n      MODE: release\n    steps:\n");
        for j in 0..5 {
            let _ = write!(
                s,
                "      - id: step{j}\n        if: success() && github.ref == 'refs/heads/main'\n        run: |\n          echo ${{{{ github.sha }}}} {j}\n          make target-{j}\n"
            );
        }
    }
    s
}

fn main() {
    for jobs in [500, 1_000, 2_000, 4_000, 8_000] {
        let source = workflow(jobs);
        let rounds = 3;
        let start = Instant::now();
        for _ in 0..rounds {
            let (workflow, diagnostics) = kiln_workflow::parse_workflow(&source);
            assert_eq!(workflow.jobs.len(), jobs);
            assert!(diagnostics.is_empty(), "{:?}", diagnostics.first());
        }
        let elapsed = start.elapsed() / rounds;
        println!(
            "{jobs:>6} jobs {:>9} bytes {:>10.2?} {:>6.1} ns/byte",
            source.len(),
            elapsed,
            elapsed.as_nanos() as f64 / source.len() as f64
        );
    }
}
