//! The kernels' parallel sections (`parallel::run_parts`): every part runs exactly once, panics
//! come back to the caller without a hang, and sections started while the helpers are busy (from
//! other threads, or inside a section) still run every part.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use snzoo_kernels::parallel::run_parts;

/// Each part of a section runs once, for every part count, many times over (the helpers go
/// from spinning to sleeping and back between some of the sections).
#[test]
fn every_part_runs_once() {
    for round in 0..200 {
        let parts = 1 + round % 7;
        let counts: Vec<AtomicUsize> = (0..parts).map(|_| AtomicUsize::new(0)).collect();
        run_parts(parts, |p| {
            counts[p].fetch_add(1, Ordering::Relaxed);
        });
        for (p, c) in counts.iter().enumerate() {
            assert_eq!(c.load(Ordering::Relaxed), 1, "round {round}: part {p} of {parts}");
        }
        if round % 50 == 49 {
            // Long enough for the helpers to go to sleep: the next section wakes them.
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }
    run_parts(0, |_| panic!("no part of an empty section runs"));
}

/// A part that panics, on a helper or on the caller, makes the section panic once all parts
/// are done; the pool runs the next section normally.
#[test]
fn a_panicking_part_panics_the_section_and_the_pool_recovers() {
    for bad in [0, 1, 2] {
        let finished = AtomicUsize::new(0);
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            run_parts(3, |p| {
                if p == bad {
                    panic!("part {p} fails");
                }
                std::thread::sleep(std::time::Duration::from_millis(2));
                finished.fetch_add(1, Ordering::SeqCst);
            })
        }));
        assert!(result.is_err(), "part {bad}'s panic was lost");
        // The other parts had finished before the section returned.
        assert_eq!(finished.load(Ordering::SeqCst), 2, "part {bad}");
        let sum = AtomicUsize::new(0);
        run_parts(3, |p| {
            sum.fetch_add(p + 1, Ordering::Relaxed);
        });
        assert_eq!(sum.load(Ordering::Relaxed), 6);
    }
}

/// Sections from several threads at once, and sections inside sections: every part of every
/// one runs once, and the results are those of a serial run.
#[test]
fn concurrent_and_nested_sections() {
    let totals = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for t in 0..4 {
            let totals = &totals;
            s.spawn(move || {
                for round in 0..100 {
                    let sum = AtomicUsize::new(0);
                    run_parts(3, |p| {
                        run_parts(2, |q| {
                            sum.fetch_add((p * 2 + q + 1) * (t + 1), Ordering::Relaxed);
                        });
                    });
                    totals.lock().unwrap().push((t, round, sum.load(Ordering::Relaxed)));
                }
            });
        }
    });
    let totals = totals.into_inner().unwrap();
    assert_eq!(totals.len(), 400);
    for (t, round, sum) in totals {
        assert_eq!(sum, 21 * (t + 1), "thread {t}, round {round}");
    }
}
