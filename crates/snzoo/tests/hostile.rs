//! Hostile and careless input, end to end through the binary: every case must end in a clear
//! error naming the file (exit 1, or 2 for a malformed flag) or a correct result — never a panic,
//! a hang, an escape, a silent wrong answer, a lost file or an outsized allocation.

use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{fixture, ok, s, snzoo};

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Exit code 1 with a message that contains every needle, and no panic.
fn fails_with(o: &Output, needles: &[&str]) {
    let e = stderr(o);
    assert_eq!(o.status.code(), Some(1), "expected exit 1: {e}");
    assert!(!e.contains("panicked"), "{e}");
    for n in needles {
        assert!(e.contains(n), "missing {n:?} in: {e}");
    }
}

/// Runs snzoo with a deadline (a hang is a failure), returning its output and peak RSS in bytes.
/// The child is reaped with `wait4` (for its resource usage), which clippy cannot see.
#[allow(clippy::zombie_processes)]
fn run_bounded(args: &[&str], env: &[(&str, &str)], deadline: Duration) -> (Output, u64) {
    let mut c = Command::new(env!("CARGO_BIN_EXE_snzoo"));
    c.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
    for (k, v) in env {
        c.env(k, v);
    }
    let mut child = c.spawn().unwrap();
    let pid = child.id() as libc::pid_t;
    let (mut out, mut err) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let reader = std::thread::spawn(move || {
        let (mut o, mut e) = (Vec::new(), Vec::new());
        let _ = out.read_to_end(&mut o);
        let _ = err.read_to_end(&mut e);
        (o, e)
    });
    let start = Instant::now();
    let (status, rss) = loop {
        let mut status = 0;
        // SAFETY: wait4 on our own child, with valid pointers.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        let r = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
        if r == pid {
            break (status, usage.ru_maxrss as u64 * 1024);
        }
        if start.elapsed() > deadline {
            let _ = child.kill();
            panic!("snzoo {args:?} did not finish within {deadline:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let (stdout, stderr) = reader.join().unwrap();
    use std::os::unix::process::ExitStatusExt;
    (Output { status: std::process::ExitStatus::from_raw(status), stdout, stderr }, rss)
}

fn tiny() -> PathBuf {
    fixture("models/tiny-resnet50v1-sn.pth")
}

fn sha(path: &Path) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha256::digest(std::fs::read(path).unwrap()).to_vec()
}

fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
}

/// A converted copy of the tiny model, with `patch` applied to the named tensor's f32 values.
fn patched_safetensors(dir: &Path, name: &str, patch: impl Fn(&mut [f32])) -> PathBuf {
    let src = dir.join("tiny.safetensors");
    if !src.exists() {
        ok(&["convert", s(&tiny()), s(&src)]);
    }
    let mut bytes = std::fs::read(&src).unwrap();
    let (n, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let info = meta.info(name).unwrap_or_else(|| panic!("no tensor {name}"));
    let (a, b) = (8 + n + info.data_offsets.0, 8 + n + info.data_offsets.1);
    let mut values: Vec<f32> = bytes[a..b].chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
    patch(&mut values);
    for (i, v) in values.iter().enumerate() {
        bytes[a + 4 * i..a + 4 * i + 4].copy_from_slice(&v.to_le_bytes());
    }
    let out = dir.join(format!("{}.safetensors", name.replace('.', "_")));
    std::fs::write(&out, bytes).unwrap();
    out
}

/// A copy of a zip-format torch.save fixture with its entries rewritten by `f`.
fn rewrite_zip(src: &Path, dst: &Path, f: impl Fn(&str, Vec<u8>) -> Vec<u8>) {
    let mut archive = zip::ZipArchive::new(std::fs::File::open(src).unwrap()).unwrap();
    let mut out = zip::ZipWriter::new(std::fs::File::create(dst).unwrap());
    let stored = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i).unwrap();
        let name = entry.name().unwrap().to_string();
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).unwrap();
        out.start_file(&name, stored).unwrap();
        out.write_all(&f(&name, bytes)).unwrap();
    }
    out.finish().unwrap();
}

#[test]
fn outputs_never_replace_inputs_or_special_files() {
    let d = tempfile::tempdir().unwrap();
    let input = d.path().join("s.pth");
    std::fs::copy(tiny(), &input).unwrap();
    let before = sha(&input);
    fails_with(&snzoo(&["convert", s(&input), s(&input)]), &["s.pth is also an input"]);
    let link = d.path().join("link.pth");
    std::os::unix::fs::symlink(&input, &link).unwrap();
    fails_with(&snzoo(&["convert", s(&input), s(&link)]), &["is also an input"]);
    assert_eq!(sha(&input), before, "the input survives");

    let photo = d.path().join("v.jpg");
    std::fs::copy(fixture("images/chelsea_420.jpg"), &photo).unwrap();
    let photo_sha = sha(&photo);
    fails_with(&snzoo(&["classify", "-w", s(&input), "--save-input", s(&photo), s(&photo)]), &["v.jpg is also an input"]);
    fails_with(&snzoo(&["classify", "-w", s(&input), "--save-logits", s(&input), s(&photo)]), &["s.pth is also an input"]);
    let twice = d.path().join("x.npy");
    fails_with(&snzoo(&["classify", "-w", s(&input), "--save-input", s(&twice), "--save-logits", s(&twice), s(&photo)]), &["both name"]);
    assert_eq!(sha(&photo), photo_sha);
    assert_eq!(sha(&input), before);

    // Devices and FIFOs are not replaced by regular files.
    fails_with(&snzoo(&["convert", s(&input), "/dev/null"]), &["/dev/null is a character device, not a regular file"]);
    assert!(std::fs::metadata("/dev/null").unwrap().file_type().is_char_device_like());
    let fifo = d.path().join("out.fifo");
    mkfifo(&fifo);
    let (o, _) = run_bounded(&["convert", s(&input), s(&fifo)], &[], Duration::from_secs(30));
    fails_with(&o, &["out.fifo is a FIFO"]);
    assert!(std::fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo_like());
    let (o, _) = run_bounded(&["eval", "-w", s(&input), "-o", s(&fifo), "-q"], &[], Duration::from_secs(30));
    fails_with(&o, &["out.fifo is a FIFO"]);
}

trait FileTypeLike {
    fn is_char_device_like(&self) -> bool;
    fn is_fifo_like(&self) -> bool;
}

impl FileTypeLike for std::fs::FileType {
    fn is_char_device_like(&self) -> bool {
        std::os::unix::fs::FileTypeExt::is_char_device(self)
    }
    fn is_fifo_like(&self) -> bool {
        std::os::unix::fs::FileTypeExt::is_fifo(self)
    }
}

#[test]
fn fifo_inputs_never_hang() {
    let d = tempfile::tempdir().unwrap();
    let fifo = d.path().join("x.JPEG");
    mkfifo(&fifo);
    let w = tiny();
    let (o, _) = run_bounded(&["classify", "-w", s(&w), s(&fifo)], &[], Duration::from_secs(30));
    fails_with(&o, &["x.JPEG is a FIFO (named pipe), not a regular file"]);
    let (o, _) = run_bounded(&["convert", s(&fifo), s(&d.path().join("o.safetensors"))], &[], Duration::from_secs(30));
    fails_with(&o, &["x.JPEG is a FIFO"]);
    // In a dataset: a miss listed in the failures (or, with --strict, an error).
    let data = d.path().join("data");
    let wnid = snzoo_imagenet::class(1).unwrap().wnid;
    std::fs::create_dir_all(data.join(wnid)).unwrap();
    std::fs::copy(fixture("images/chelsea_420.jpg"), data.join(wnid).join("a.JPEG")).unwrap();
    mkfifo(&data.join(wnid).join("b.JPEG"));
    let (o, _) = run_bounded(&["eval", "-w", s(&w), "--data", s(&data), "--json", "-q"], &[], Duration::from_secs(60));
    assert!(o.status.success(), "{}", stderr(&o));
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!((r["images"].as_u64(), r["failed"].as_u64()), (Some(2), Some(1)));
    assert!(r["failures"][0]["reason"].as_str().unwrap().contains("FIFO"));
    let (o, _) = run_bounded(&["eval", "-w", s(&w), "--data", s(&data), "--strict", "-q"], &[], Duration::from_secs(60));
    fails_with(&o, &["b.JPEG"]);
}

#[test]
fn absurd_counts_are_refused_before_any_work() {
    let w = tiny();
    let img = fixture("images/chelsea_420.jpg");
    for (args, needle) in [
        (vec!["eval", "-w", s(&w), "--threads", "20000", "-q"], "--threads 20000"),
        (vec!["bench", "-w", s(&w), "--threads", "100000", "--seconds", "0.1"], "--threads 100000"),
        (vec!["bench", "-w", s(&w), "--batch-size", "100000", "--seconds", "0.1"], "memory"),
        (vec!["eval", "-w", s(&w), "--batch-size", "1000000", "-q"], "memory"),
        (vec!["classify", "-w", s(&w), "--batch-size", "1000000", s(&img)], "memory"),
    ] {
        let (o, rss) = run_bounded(&args, &[], Duration::from_secs(30));
        fails_with(&o, &[needle]);
        assert!(rss < 1 << 30, "{args:?} used {rss} bytes before refusing");
    }
    // Malformed values are usage errors (exit 2), never a panic.
    for args in [
        vec!["bench", "-w", s(&w), "--seconds", "nan"],
        vec!["bench", "-w", s(&w), "--seconds", "inf"],
        vec!["bench", "-w", s(&w), "--seconds", "1e308"],
        vec!["bench", "-w", s(&w), "--seconds", "-1"],
        vec!["eval", "-w", s(&w), "--batch-size", "0"],
        vec!["classify", "-w", s(&w), "--top", "0", s(&img)],
        vec!["classify", "-w", s(&w), "--batch-size", "0", s(&img)],
    ] {
        let o = snzoo(&args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(!stderr(&o).contains("panicked"));
    }
}

#[test]
fn file_names_that_are_not_utf8_are_classified_and_escaped() {
    let d = tempfile::tempdir().unwrap();
    let name = std::ffi::OsStr::from_bytes(b"caf\xe9.jpg");
    let img = d.path().join(name);
    std::fs::copy(fixture("images/chelsea_420.jpg"), &img).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_snzoo")).args(["classify", "--json", "-w", s(&tiny())]).arg(&img).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(j[0]["image"].as_str().unwrap().ends_with("caf\\xe9.jpg"), "{}", j[0]["image"]);
    assert_eq!(j[0]["top"].as_array().unwrap().len(), 5);
    // The plain listing and an error message name it the same way.
    let out = Command::new(env!("CARGO_BIN_EXE_snzoo"))
        .args(["classify", "-w", s(&tiny())])
        .arg(d.path().join(std::ffi::OsStr::from_bytes(b"gone\xff.jpg")))
        .output()
        .unwrap();
    fails_with(&out, &["gone\\xff.jpg"]);
}

#[test]
fn weights_that_compute_nan_are_refused_naming_the_tensor() {
    let d = tempfile::tempdir().unwrap();
    let img = fixture("images/chelsea_420.jpg");
    let cases = [
        ("conv1.weight", Box::new(|v: &mut [f32]| v[3] = f32::NAN) as Box<dyn Fn(&mut [f32])>, "holds NaN at element 3"),
        ("sn1.mean_weight", Box::new(|v: &mut [f32]| v[0] = f32::NAN), "`sn1.mean_weight` holds NaN"),
        ("layer1.0.sn2.weight", Box::new(|v: &mut [f32]| v[1] = f32::INFINITY), "holds inf"),
        ("layer1.0.sn1.running_var", Box::new(|v: &mut [f32]| v[2] = -1.0), "negative variance"),
    ];
    for (name, patch, needle) in cases {
        let w = patched_safetensors(d.path(), name, patch);
        fails_with(&snzoo(&["classify", "-w", s(&w), s(&img)]), &[name, needle, w.file_name().unwrap().to_str().unwrap()]);
    }
    // A weight stored as integers in a safetensors file: refused, named.
    let bytes = std::fs::read(d.path().join("tiny.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let name = "layer1.0.sn1.mean_weight";
    let shape = st.tensor(name).unwrap().shape().to_vec();
    let ints = vec![1u8; 4 * shape.iter().product::<usize>()];
    let mut tensors: Vec<(String, safetensors::tensor::TensorView)> = st.tensors().into_iter().filter(|(n, _)| n != name).collect();
    tensors.push((name.into(), safetensors::tensor::TensorView::new(safetensors::Dtype::I32, shape, &ints).unwrap()));
    let int = d.path().join("int.safetensors");
    std::fs::write(&int, safetensors::serialize(tensors, meta.metadata().clone()).unwrap()).unwrap();
    fails_with(
        &snzoo(&["classify", "-w", s(&int), s(&img)]),
        &["int.safetensors", "`layer1.0.sn1.mean_weight` has dtype i32", "floating-point"],
    );
    // The same in a torch.save file: refused at conversion, nothing written.
    let src = fixture("models/r18v1_bn_zip.pth");
    let out = d.path().join("out.safetensors");
    let nan = d.path().join("nan.pth");
    rewrite_zip(&src, &nan, |name, mut b| {
        if name.ends_with("/data/0") {
            b[..4].copy_from_slice(&f32::NAN.to_le_bytes());
        }
        b
    });
    fails_with(&snzoo(&["convert", s(&nan), s(&out)]), &["nan.pth", "holds NaN at element 0"]);
    assert!(!out.exists());
    // Storages of bool instead of float: refused naming the key and the type.
    let boolean = d.path().join("bool.pth");
    rewrite_zip(&src, &boolean, |name, b| {
        if name.ends_with("data.pkl") {
            let text = b.windows(12).position(|w| w == b"FloatStorage").expect("a FloatStorage global");
            let mut out = b[..text].to_vec();
            out.extend_from_slice(b"BoolStorage");
            out.extend_from_slice(&b[text + 12..]);
            return out;
        }
        b
    });
    // (The fixture's protocol-2 pickle names classes in text GLOBAL opcodes, so this edit is
    // a valid pickle.)
    fails_with(&snzoo(&["convert", s(&boolean), s(&out)]), &["bool.pth", "has dtype bool; model weights are floating-point tensors"]);
    assert!(!out.exists());
}

#[test]
fn architecture_metadata_must_agree_with_the_tensors() {
    let d = tempfile::tempdir().unwrap();
    let w = d.path().join("tiny.safetensors");
    ok(&["convert", s(&tiny()), s(&w)]);
    let bytes = std::fs::read(&w).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let tensors: Vec<(String, safetensors::tensor::TensorView)> = st.tensors();
    let img = fixture("images/chelsea_420.jpg");
    for (layers, needles) in [
        ("10000000,1,1,1", &["bomb.safetensors", "bad snzoo metadata", "out of range"][..]),
        ("3,4,6,4", &["bomb.safetensors", "the metadata describes", "but the tensors are resnet50v1-sn-w4"][..]),
    ] {
        let mut metadata = meta.metadata().clone().unwrap();
        metadata.insert("layers".into(), layers.into());
        let bomb = d.path().join("bomb.safetensors");
        std::fs::write(&bomb, safetensors::serialize(tensors.clone(), Some(metadata)).unwrap()).unwrap();
        let (o, rss) = run_bounded(&["classify", "-w", s(&bomb), s(&img)], &[], Duration::from_secs(30));
        fails_with(&o, needles);
        assert!(rss < 512 << 20, "{rss}");
    }
}

/// Decompression and nesting bombs in checkpoint files: refused with a named limit, quickly,
/// within a few hundred MB.
#[test]
fn pickle_bombs_are_refused_within_bounded_memory() {
    let d = tempfile::tempdir().unwrap();
    // A 2 MB zip whose data.pkl inflates to 200 MB of NONE opcodes.
    let deflate = d.path().join("deflate.pth");
    {
        let mut zip = zip::ZipWriter::new(std::fs::File::create(&deflate).unwrap());
        let deflated = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
        zip.start_file("deflate/data.pkl", deflated).unwrap();
        zip.write_all(&[0x80, 2]).unwrap();
        let chunk = vec![b'N'; 1 << 20];
        for _ in 0..200 {
            zip.write_all(&chunk).unwrap();
        }
        zip.write_all(b".").unwrap();
        zip.finish().unwrap();
    }
    // A legacy file whose object is ten million nested tuples.
    let nested = d.path().join("nested.pth");
    {
        let mut b = vec![0x80, 2, 0x8a, 10, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, b'.'];
        b.extend([0x80, 2, b'M', 0xe9, 0x03, b'.']);
        b.extend([0x80, 2, b'}', b'.']);
        b.extend([0x80, 2, b')']);
        b.extend(std::iter::repeat_n(0x85u8, 10_000_000));
        b.push(b'.');
        std::fs::write(&nested, b).unwrap();
    }
    let out = d.path().join("out.safetensors");
    for (file, limit) in [(&deflate, "limit of"), (&nested, "objects")] {
        let (o, rss) = run_bounded(&["convert", s(file), s(&out)], &[], Duration::from_secs(60));
        fails_with(&o, &[file.file_name().unwrap().to_str().unwrap(), limit]);
        assert!(rss < 300 << 20, "{}: peak RSS {rss}", file.display());
        assert!(!out.exists());
    }
}

#[test]
fn converted_files_are_deterministic_and_readable() {
    let d = tempfile::tempdir().unwrap();
    let (a, b) = (d.path().join("a.safetensors"), d.path().join("b.safetensors"));
    // A temporary file left by a killed conversion (its process id does not exist).
    let stale = d.path().join(".a.safetensors.snzoo-99999999-0.tmp");
    std::fs::write(&stale, vec![0u8; 1 << 20]).unwrap();
    for out in [&a, &b] {
        let o = Command::new("sh")
            .arg("-c")
            .arg(format!("umask 022; exec '{}' convert '{}' '{}'", env!("CARGO_BIN_EXE_snzoo"), s(&tiny()), s(out)))
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        assert_eq!(std::fs::metadata(out).unwrap().permissions().mode() & 0o777, 0o644);
    }
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap(), "the same input gives the same bytes");
    assert!(!stale.exists(), "the killed conversion's temporary file is removed");
    let names: Vec<_> = std::fs::read_dir(d.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names.len(), 2, "{names:?}");
}

#[test]
fn finetune_refuses_hyper_parameters_that_cannot_train() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("ft.safetensors");
    for (flag, value) in [
        ("--lr", "nan"),
        ("--lr", "inf"),
        ("--lr", "1e30"),
        ("--lr", "0"),
        ("--momentum", "nan"),
        ("--momentum", "1"),
        ("--weight-decay", "nan"),
        ("--weight-decay", "-1"),
        ("--dropout", "nan"),
    ] {
        let arg = format!("{flag}={value}");
        let o = snzoo(&["finetune", "-w", s(&tiny()), "--data", s(&fixture("evalset")), "-o", s(&out), &arg, "-q"]);
        fails_with(&o, &[flag]);
        assert!(!out.exists());
    }
}

#[test]
fn journals_are_recovered_locked_and_checked() {
    let d = tempfile::tempdir().unwrap();
    let w = tiny();
    let data = d.path().join("data");
    let wnid = snzoo_imagenet::class(281).unwrap().wnid;
    std::fs::create_dir_all(data.join(wnid)).unwrap();
    for i in 0..120 {
        std::fs::copy(fixture("images/chelsea_small.jpg"), data.join(wnid).join(format!("{i:03}.JPEG"))).unwrap();
    }
    let report = d.path().join("r.json");
    let journal = d.path().join("r.json.partial");
    // An empty journal (a crash, or a full disk, while it was created) starts over.
    std::fs::write(&journal, b"").unwrap();
    ok(&["eval", "-w", s(&w), "--data", s(&data), "-o", s(&report), "-q"]);
    assert!(report.exists() && !journal.exists());
    let reference: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();

    // Records that contradict the dataset or the model are refused, naming the line.
    let model = snzoo::Model::open(&w).unwrap();
    let dataset = snzoo::snzoo_eval::Dataset::discover(&data, None).unwrap();
    let options = snzoo::EvalOptions { output: Some(report.clone()), ..Default::default() };
    let header = serde_json::to_string(&snzoo::evaluate::journal_header(&model, &dataset, &options).unwrap()).unwrap();
    for (record, needle) in [
        (r#"{"i":0,"label":5,"top5":[1,2,3,4,5],"loss":1.0}"#, "but 281 in the dataset"),
        (r#"{"i":0,"label":281,"top5":[5000,2,3,4,5],"loss":1.0}"#, "class 5000"),
        (r#"{"i":0,"label":281,"top5":[1,2,3,4,5],"loss":-3.0}"#, "impossible loss"),
        (r#"{"i":0,"label":281,"top5":[1,1,3,4,5],"loss":1.0}"#, "ranks a class twice"),
        (r#"{"i":999,"label":281,"top5":[1,2,3,4,5],"loss":1.0}"#, "not in the dataset"),
    ] {
        std::fs::write(&journal, format!("{header}\n{record}\n")).unwrap();
        let o = snzoo(&["eval", "-w", s(&w), "--data", s(&data), "-o", s(&report), "-q"]);
        fails_with(&o, &["r.json.partial is corrupt at line 2", needle]);
    }
    std::fs::remove_file(&journal).unwrap();

    // Two runs with one --output: the second is refused at once, naming the first.
    let mut first = Command::new(env!("CARGO_BIN_EXE_snzoo"))
        .args(["eval", "-w", s(&w), "--data", s(&data), "-o", s(&report), "-q", "--batch-size", "1", "--threads", "1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while std::fs::read_to_string(&journal).map_or(0, |t| t.lines().count()) < 2 && start.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(1));
    }
    let pid = first.id().to_string();
    assert!(Command::new("kill").args(["-STOP", &pid]).status().unwrap().success());
    let second = snzoo(&["eval", "-w", s(&w), "--data", s(&data), "-o", s(&report), "-q"]);
    assert!(Command::new("kill").args(["-CONT", &pid]).status().unwrap().success());
    fails_with(&second, &["r.json.partial.lock is in use by snzoo (pid", &pid, "snzoo eval --output"]);
    assert!(first.wait().unwrap().success());
    let again: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(again["counts"], reference["counts"]);
}

#[test]
fn io_errors_are_described_once() {
    let o = snzoo(&["convert", "/nonexistent/x.pth", "/tmp/never.safetensors"]);
    let e = stderr(&o);
    assert_eq!(e.matches("os error 2").count(), 1, "{e}");
    assert!(e.contains("/nonexistent/x.pth"), "{e}");
}
