//! `snzoo eval` end to end. Expected numbers come from PyTorch: the labels are chosen against the
//! reference model's top-5 for these photos (fixtures/classify/expected.json), so top-1 and
//! top-5 are known without running snzoo.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use snzoo_eval::Report;

mod common;
use common::{fixture, ok, s, snzoo};

fn weights() -> PathBuf {
    fixture("models/tiny-resnet50v1-sn.pth")
}

/// (photo, label): the PyTorch top-5 of the tiny model are [614, 948, 167, 717, 144],
/// [717, 948, 614, 167, 144], [948, 144, 167, 614, 717], [614, 948, 717, 167, 144].
const CASES: [(&str, usize); 4] = [
    ("chelsea_420.jpg", 614), // top-1 hit
    ("coffee_444.jpg", 614),  // 3rd: top-5 hit
    ("rocket_gray.jpg", 1),   // miss
    ("coffee_cmyk.jpg", 144), // 5th: top-5 hit
];

fn image_folder(dir: &Path) {
    for (i, (photo, label)) in CASES.iter().enumerate() {
        let wnid = snzoo_imagenet::class(*label).unwrap().wnid;
        std::fs::create_dir_all(dir.join(wnid)).unwrap();
        std::fs::copy(fixture(&format!("images/{photo}")), dir.join(wnid).join(format!("img{i}.JPEG"))).unwrap();
    }
}

fn report(path: &Path) -> Report {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn the_three_layouts_give_pytorchs_numbers() {
    let d = tempfile::tempdir().unwrap();
    // ImageFolder, with only 3 of the 1000 class folders present.
    let folder = d.path().join("folder");
    image_folder(&folder);
    // List file.
    let list_root = d.path().join("list");
    std::fs::create_dir_all(list_root.join("val")).unwrap();
    let mut list = String::new();
    for (i, (photo, label)) in CASES.iter().enumerate() {
        std::fs::copy(fixture(&format!("images/{photo}")), list_root.join(format!("val/{i}.JPEG"))).unwrap();
        list.push_str(&format!("val/{i}.JPEG {label}\n"));
    }
    std::fs::write(d.path().join("val.txt"), list).unwrap();
    // Flat ILSVRC2012 val: file numbers whose bundled ground truth is the wanted label.
    let flat = d.path().join("flat");
    std::fs::create_dir_all(&flat).unwrap();
    let gt = snzoo_imagenet::val_labels();
    let mut used = Vec::new();
    for (photo, label) in CASES {
        let n = (0..gt.len()).find(|&i| gt[i] as usize == label && !used.contains(&i)).unwrap();
        used.push(n);
        std::fs::copy(fixture(&format!("images/{photo}")), flat.join(format!("ILSVRC2012_val_{:08}.JPEG", n + 1))).unwrap();
    }
    let val_txt = d.path().join("val.txt");
    let runs: [(&str, Vec<&str>); 3] = [
        ("image_folder", vec!["--data", s(&folder)]),
        ("list_file", vec!["--data", s(&list_root), "--labels", s(&val_txt)]),
        ("flat_val", vec!["--data", s(&flat)]),
    ];
    for (layout, extra) in runs {
        let out = d.path().join(format!("{layout}.json"));
        let w = weights();
        let mut args = vec!["eval", "--weights", s(&w), "--output", s(&out), "--quiet"];
        args.extend(extra);
        ok(&args);
        let r = report(&out);
        assert_eq!(r.dataset.layout, layout);
        assert_eq!((r.images, r.counts.correct1, r.counts.correct5, r.failed), (4, 1, 3, 0), "{layout}");
        assert_eq!((r.top1, r.top5), (25.0, 75.0));
        assert_eq!(r.weights.arch, "resnet50v1-sn-w4");
        assert_eq!(r.preprocess.resize, 256);
        assert!(!PathBuf::from(format!("{}.partial", out.display())).exists(), "journal left behind");
    }
}

#[test]
fn results_do_not_depend_on_threads_or_batch_size() {
    let d = tempfile::tempdir().unwrap();
    image_folder(d.path());
    let w = weights();
    let mut seen = Vec::new();
    for (threads, batch) in [("1", "1"), ("2", "3"), ("3", "16")] {
        let json = ok(&["eval", "-w", s(&w), "--data", s(d.path()), "--threads", threads, "--batch-size", batch, "--json", "-q"]);
        let r: Report = serde_json::from_str(&json).unwrap();
        seen.push((r.counts.correct1, r.counts.correct5, r.counts.per_class.clone()));
    }
    assert!(seen.windows(2).all(|w| w[0] == w[1]), "{seen:?}");
}

#[test]
fn a_corrupt_image_is_a_miss_and_strict_refuses_it() {
    let d = tempfile::tempdir().unwrap();
    image_folder(d.path());
    let jpeg = std::fs::read(fixture("images/chelsea_420.jpg")).unwrap();
    let tench = d.path().join("n01440764");
    std::fs::create_dir_all(&tench).unwrap();
    std::fs::write(tench.join("broken.JPEG"), &jpeg[..jpeg.len() / 3]).unwrap();
    let w = weights();
    let r: Report = serde_json::from_str(&ok(&["eval", "-w", s(&w), "--data", s(d.path()), "--json", "-q"])).unwrap();
    assert_eq!((r.images, r.failed, r.counts.correct1, r.counts.correct5), (5, 1, 1, 3));
    assert_eq!((r.top1, r.top5), (20.0, 60.0), "the failure stays in the denominator");
    assert_eq!(r.failures[0].file, "n01440764/broken.JPEG");
    assert!(r.failures[0].reason.contains("truncated"), "{}", r.failures[0].reason);
    let strict = snzoo(&["eval", "-w", s(&w), "--data", s(d.path()), "--strict", "-q"]);
    assert_eq!(strict.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&strict.stderr).contains("broken.JPEG"));
}

#[test]
fn bad_datasets_fail_before_any_work() {
    let d = tempfile::tempdir().unwrap();
    let w = weights();
    let cases: Vec<(Vec<String>, &str)> = vec![
        (vec!["--data".into(), d.path().join("missing").display().to_string()], "does not exist"),
        (vec!["--data".into(), d.path().display().to_string()], "no images found"),
    ];
    for (extra, needle) in cases {
        let mut args = vec!["eval", "-w", s(&w)];
        args.extend(extra.iter().map(|a| a.as_str()));
        let out = snzoo(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains(needle), "{err}");
    }
    std::fs::write(d.path().join("val.txt"), "a.JPEG 3\n").unwrap();
    let out = snzoo(&["eval", "-w", s(&w), "--data", s(d.path()), "--labels", s(&d.path().join("val.txt"))]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("do not exist"));
    // A 10-class model cannot score ImageNet labels.
    image_folder(&d.path().join("f"));
    let small = fixture("models/r18v1_bn_zip.pth");
    let out = snzoo(&["eval", "-w", s(&small), "--data", s(&d.path().join("f"))]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("out of range for a model with 10 classes"));
}

#[test]
fn shards_merge_to_the_whole() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("data");
    image_folder(&data);
    let w = weights();
    let whole = d.path().join("whole.json");
    ok(&["eval", "-w", s(&w), "--data", s(&data), "-o", s(&whole), "-q"]);
    let (a, b) = (d.path().join("a.json"), d.path().join("b.json"));
    ok(&["eval", "-w", s(&w), "--data", s(&data), "--shard", "0/2", "-o", s(&a), "-q"]);
    ok(&["eval", "-w", s(&w), "--data", s(&data), "--shard", "1/2", "-o", s(&b), "-q"]);
    assert_eq!(report(&a).images + report(&b).images, 4);
    let merged = d.path().join("merged.json");
    ok(&["eval", "--merge", s(&a), s(&b), "-o", s(&merged)]);
    let (m, w_) = (report(&merged), report(&whole));
    assert_eq!((m.images, m.top1, m.top5), (w_.images, w_.top1, w_.top5));
    assert_eq!(m.counts.per_class, w_.counts.per_class);
    // Missing or repeated shards are refused.
    assert_eq!(snzoo(&["eval", "--merge", s(&a)]).status.code(), Some(1));
    assert_eq!(snzoo(&["eval", "--merge", s(&a), s(&a)]).status.code(), Some(1));
    assert_eq!(report(&a).compute, "f32");
    // A shard computed in another precision is refused (where this CPU runs bf16 at all).
    if snzoo::snzoo_model::snzoo_kernels::gemm_bf16::available() {
        let b16 = d.path().join("b16.json");
        ok(&["eval", "-w", s(&w), "--data", s(&data), "--shard", "1/2", "--dtype", "bf16", "-o", s(&b16), "-q"]);
        assert_eq!(report(&b16).compute, "bf16");
        let out = snzoo(&["eval", "--merge", s(&a), s(&b16)]);
        assert_eq!(out.status.code(), Some(1));
        assert!(String::from_utf8_lossy(&out.stderr).contains("--dtype"), "{}", String::from_utf8_lossy(&out.stderr));
    }
    // --limit takes the first N in canonical order.
    let r: Report = serde_json::from_str(&ok(&["eval", "-w", s(&w), "--data", s(&data), "--limit", "2", "--json", "-q"])).unwrap();
    assert_eq!(r.images, 2);
}

#[test]
fn results_csv_rows_are_appended() {
    let d = tempfile::tempdir().unwrap();
    image_folder(d.path());
    let csv = d.path().join("results.csv");
    let w = weights();
    for _ in 0..2 {
        ok(&["eval", "-w", s(&w), "--data", s(d.path()), "--results-csv", s(&csv), "-q"]);
    }
    let text = std::fs::read_to_string(&csv).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "model,top1,top1_err,top5,top5_err,param_count,img_size,crop_pct,interpolation");
    assert_eq!(lines.len(), 3);
    // param_count as timm counts it: PyTorch's `sum(p.numel() for p in model.parameters())` is
    // 224,810 for the tiny model (its 3,320 running-statistics entries are buffers).
    assert!(lines[1].starts_with("resnet50v1-sn-w4,25.000,75.000,75.000,25.000,0.22,224,0.875,bilinear"), "{}", lines[1]);
    let r: Report = serde_json::from_str(&ok(&["eval", "-w", s(&w), "--data", s(d.path()), "--json", "-q"])).unwrap();
    assert_eq!(r.weights.param_count, 224_810);
}

/// kill -9 in the middle of a run, then the same command: it resumes, does not recompute the
/// journaled images, and ends with the numbers of an uninterrupted run.
#[cfg(unix)]
#[test]
fn a_killed_run_resumes_to_identical_numbers() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("data");
    image_folder(&data);
    // Enough images that the run is still going when it is stopped.
    let wnid = snzoo_imagenet::class(1).unwrap().wnid;
    for i in 0..150 {
        std::fs::copy(fixture("images/chelsea_small.jpg"), data.join(wnid).join(format!("extra{i:03}.JPEG"))).unwrap();
    }
    let total = 154;
    let w = weights();
    let reference = d.path().join("reference.json");
    ok(&["eval", "-w", s(&w), "--data", s(&data), "-o", s(&reference), "--batch-size", "1", "-q"]);

    let out = d.path().join("report.json");
    let journal = d.path().join("report.json.partial");
    let mut child = Command::new(env!("CARGO_BIN_EXE_snzoo"))
        .args(["eval", "-w", s(&w), "--data", s(&data), "-o", s(&out), "--batch-size", "1", "--threads", "1", "-q"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Stop it once the journal holds the header and a few images, then kill it.
    let start = Instant::now();
    loop {
        let lines = std::fs::read_to_string(&journal).map(|t| t.lines().count()).unwrap_or(0);
        if lines >= 4 || start.elapsed() > Duration::from_secs(60) {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(Command::new("kill").args(["-STOP", &child.id().to_string()]).status().unwrap().success());
    let journaled = std::fs::read_to_string(&journal).unwrap().lines().count() - 1;
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(journaled >= 3 && journaled < total && !out.exists(), "journaled {journaled}");

    // A journaled image is replaced by another photo before the resume: it is computed again.
    let first = data.join(wnid).join("extra000.JPEG");
    let replacement = d.path().join("replacement.JPEG");
    std::fs::copy(fixture("images/coffee_444.jpg"), &replacement).unwrap();
    std::fs::rename(&replacement, &first).unwrap();
    let again = snzoo(&["eval", "-w", s(&w), "--data", s(&data), "-o", s(&out), "--batch-size", "1"]);
    assert!(again.status.success(), "{}", String::from_utf8_lossy(&again.stderr));
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(err.contains("resuming from") && err.contains("1 journaled image changed since"), "{err}");
    // The reference: an uninterrupted run over the data as it is now.
    ok(&["eval", "-w", s(&w), "--data", s(&data), "-o", s(&reference), "--batch-size", "1", "-q"]);
    let (r, reference) = (report(&out), report(&reference));
    assert!(r.resumed_images + 1 >= journaled && r.resumed_images < total, "resumed {}", r.resumed_images);
    assert_eq!((r.images, r.counts.correct1, r.counts.correct5), (reference.images, reference.counts.correct1, reference.counts.correct5));
    assert_eq!(r.counts.per_class, reference.counts.per_class);
    assert_eq!(r.counts.loss_sum.to_bits(), reference.counts.loss_sum.to_bits());
    assert!(!journal.exists());

    // A journal from other weights is refused, never mixed in.
    std::fs::write(&journal, "{\"snzoo_journal\":1,\"weights_sha256\":\"00\",\"dataset_fingerprint\":\"x\",\"dataset_root\":\"/\",\"selection\":\"\",\"preprocess\":null}\n").unwrap();
    let refused = snzoo(&["eval", "-w", s(&w), "--data", s(&data), "-o", s(&out)]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("belongs to another evaluation"));
}

#[test]
fn the_bundled_default_runs_end_to_end() {
    let r: Report = serde_json::from_str(&ok(&["eval", "--json", "-q"])).unwrap();
    assert_eq!(r.dataset.layout, "image_folder");
    assert_eq!(r.images, 8);
    assert_eq!(r.failed, 0);
}

/// Several models give one report each and a leaderboard; the same run split into shards (a
/// shard covers every model's share of the images) and merged gives the same reports exactly,
/// whatever the shard count.
#[test]
fn leaderboards_shard_and_merge_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    image_folder(&data);
    let bf16 = dir.path().join("tiny-bf16.safetensors");
    ok(&["convert", s(&weights()), s(&bf16), "--dtype", "bf16"]);
    let models = format!("{},{}", s(&weights()), s(&bf16));
    let whole = dir.path().join("whole");
    let out = ok(&["eval", "--models", &models, "--data", s(&data), "--output-dir", s(&whole), "-q"]);
    assert!(out.contains("| tiny-resnet50v1-sn | resnet50v1-sn-w4 | f32 | 4 | — | 25.000 |"), "{out}");
    assert!(out.trim_end().ends_with("leaderboard.md"));
    let csv = std::fs::read_to_string(whole.join("leaderboard.csv")).unwrap();
    assert_eq!(csv.lines().count(), 3, "{csv}");
    assert!(csv.lines().nth(2).unwrap().starts_with("tiny-bf16,25.000,75.000,75.000,25.000,"), "{csv}");
    for n in [2, 3, 5] {
        let sharded = dir.path().join(format!("sharded{n}"));
        for i in 0..n {
            let shard = format!("{i}/{n}");
            ok(&["eval", "--models", &models, "--data", s(&data), "--output-dir", s(&sharded), "--shard", &shard, "-q"]);
        }
        let mut files: Vec<String> =
            std::fs::read_dir(&sharded).unwrap().map(|e| e.unwrap().path().to_string_lossy().into_owned()).collect();
        files.sort();
        files.reverse(); // any order
        assert_eq!(files.len(), 2 * n);
        let merged = dir.path().join(format!("merged{n}"));
        let mut args = vec!["eval", "--output-dir", s(&merged), "--merge"];
        args.extend(files.iter().map(String::as_str));
        ok(&args);
        for name in ["tiny-resnet50v1-sn", "tiny-bf16"] {
            let (a, b) = (report(&whole.join(format!("{name}.json"))), report(&merged.join(format!("{name}.json"))));
            assert_eq!(a.counts, b.counts, "{name}, {n} shards");
            assert_eq!(a.counts.loss_sum.to_bits(), b.counts.loss_sum.to_bits());
            assert_eq!((a.top1, a.top5, a.loss, &a.per_class_top1), (b.top1, b.top5, b.loss, &b.per_class_top1));
        }
        assert!(merged.join("leaderboard.md").is_file() && merged.join("leaderboard.csv").is_file());
    }
    // Several models need a directory for their reports.
    let r = snzoo(&["eval", "--models", &models, "--data", s(&data)]);
    assert_eq!(r.status.code(), Some(2), "{}", String::from_utf8_lossy(&r.stderr));
}
