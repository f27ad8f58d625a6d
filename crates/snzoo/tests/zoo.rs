//! The zoo against real HTTP servers on 127.0.0.1 started here: a file server that honours Range
//! and can cut a transfer half-way, a Google Drive look-alike with the large-file confirmation
//! page, and a minimal Hugging Face Hub endpoint for `hf-hub`. Never the internet.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures").join(rel)
}

fn checkpoint() -> Vec<u8> {
    std::fs::read(fixture("models/tiny-resnet50v1-sn.pth")).unwrap()
}

fn sha256_hex(b: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(b).iter().map(|x| format!("{x:02x}")).collect()
}

struct Request {
    path: String,
    headers: HashMap<String, String>,
}

struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// Close the connection after this many body bytes (a cut transfer).
    cut_after: Option<usize>,
}

/// Each request's path and Range header.
type RequestLog = Arc<Mutex<Vec<(String, Option<String>)>>>;

type Handler = Arc<dyn Fn(&Request) -> Response + Send + Sync>;

/// A one-thread-per-connection HTTP/1.1 server on 127.0.0.1 that logs each request's path and
/// Range header. It runs until the test process ends.
struct Server {
    base: String,
    log: RequestLog,
}

fn serve(handler: Handler) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let log = Arc::new(Mutex::new(Vec::new()));
    let log2 = Arc::clone(&log);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let handler = Arc::clone(&handler);
            let log = Arc::clone(&log2);
            std::thread::spawn(move || handle(stream, &*handler, &log));
        }
    });
    Server { base, log }
}

fn handle(mut stream: TcpStream, handler: &(dyn Fn(&Request) -> Response + Send + Sync), log: &Mutex<Vec<(String, Option<String>)>>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    log.lock().unwrap().push((path.clone(), headers.get("range").cloned()));
    let resp = handler(&Request { path, headers });
    let reason = match resp.status {
        200 => "OK",
        206 => "Partial Content",
        302 => "Found",
        404 => "Not Found",
        416 => "Range Not Satisfiable",
        _ => "Status",
    };
    let mut head = format!("HTTP/1.1 {} {reason}\r\nContent-Length: {}\r\nConnection: close\r\n", resp.status, resp.body.len());
    for (k, v) in &resp.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let _ = stream.write_all(head.as_bytes());
    let n = resp.cut_after.unwrap_or(resp.body.len()).min(resp.body.len());
    let _ = stream.write_all(&resp.body[..n]);
    let _ = stream.flush();
    let _ = stream.shutdown(std::net::Shutdown::Both);
}

/// Serves `data` with Range support; the first `cuts` full-body answers stop half-way.
fn range_response(req: &Request, data: &[u8], cut: bool, extra: Vec<(String, String)>) -> Response {
    let mut headers = extra;
    headers.push(("Accept-Ranges".into(), "bytes".into()));
    headers.push(("Content-Type".into(), "application/octet-stream".into()));
    if let Some(r) = req.headers.get("range") {
        let spec = r.trim_start_matches("bytes=");
        let (a, b) = spec.split_once('-').unwrap();
        let start: usize = a.parse().unwrap();
        let end: usize = if b.is_empty() { data.len() - 1 } else { b.parse().unwrap() };
        if start >= data.len() {
            return Response { status: 416, headers, body: vec![], cut_after: None };
        }
        headers.push(("Content-Range".into(), format!("bytes {start}-{end}/{}", data.len())));
        let body = data[start..=end].to_vec();
        let cut_after = cut.then_some(body.len() / 2);
        return Response { status: 206, headers, body, cut_after };
    }
    Response { status: 200, headers, body: data.to_vec(), cut_after: cut.then_some(data.len() / 2) }
}

/// A file server for `/tiny.pth` whose first `cuts` transfers are cut half-way.
fn file_server(data: Vec<u8>, cuts: usize) -> Server {
    let left = Arc::new(Mutex::new(cuts));
    serve(Arc::new(move |req: &Request| {
        if req.path != "/tiny.pth" {
            return Response { status: 404, headers: vec![], body: b"not found".to_vec(), cut_after: None };
        }
        let mut l = left.lock().unwrap();
        let cut = *l > 0;
        if cut {
            *l -= 1;
        }
        range_response(req, &data, cut, vec![])
    }))
}

/// A zoo home with a card for the tiny bundled model whose only source is `source`.
struct Zoo {
    dir: tempfile::TempDir,
}

impl Zoo {
    fn new(source: &str, sha256: Option<&str>) -> Zoo {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("cards")).unwrap();
        let sha = sha256.map(|s| format!("sha256 = \"{s}\"\n")).unwrap_or_default();
        let card = format!(
            r#"name = "tiny-sn"
title = "Tiny SN ResNet-50 (test)"
arch = "resnet50v1-sn-w4"
loadable = true
format = "torch.save legacy"
file = "tiny.pth"
{sha}license = "MIT"
paper = "test"
repository = "test"

[normalization]
kind = "switchable"
using_bn = true

[claimed]
top1 = 20.0
top5 = 50.0

[eval]
resize = 256
crop = 224
interpolation = "bilinear"

[[sources]]
{source}
"#
        );
        std::fs::write(dir.path().join("cards/tiny-sn.toml"), card).unwrap();
        Zoo { dir }
    }

    fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    fn model_dir(&self) -> PathBuf {
        self.home().join("models/tiny-sn")
    }

    fn run(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut c = Command::new(env!("CARGO_BIN_EXE_snzoo"));
        c.args(args)
            .env("SNZOO_HOME", self.home())
            .env("SNZOO_CARDS_DIR", self.dir.path().join("cards"))
            .env("HF_HOME", self.dir.path().join("hf"));
        for (k, v) in env {
            c.env(k, v);
        }
        c.output().unwrap()
    }
}

fn stdout_last_line(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).lines().last().unwrap_or("").to_string()
}

fn assert_ok(o: &Output) {
    assert!(o.status.success(), "stderr: {}", String::from_utf8_lossy(&o.stderr));
}

fn converted_metadata(path: &Path) -> HashMap<String, String> {
    let bytes = std::fs::read(path).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    meta.metadata().clone().unwrap_or_default()
}

#[test]
fn a_transfer_cut_half_way_resumes_and_ends_verified_and_converted() {
    let data = checkpoint();
    let server = file_server(data.clone(), 2);
    let zoo = Zoo::new(&format!("kind = \"url\"\nurl = \"{}/tiny.pth\"", server.base), Some(&sha256_hex(&data)));
    let out = zoo.run(&["download", "tiny-sn", "-q"], &[]);
    assert_ok(&out);
    let converted = PathBuf::from(stdout_last_line(&out));
    assert_eq!(converted, zoo.model_dir().join("model.safetensors"));
    let meta = converted_metadata(&converted);
    assert_eq!(meta["arch"], "resnet50v1-sn-w4");
    assert_eq!(meta["source_sha256"], sha256_hex(&data));
    assert_eq!(std::fs::read(zoo.model_dir().join("tiny.pth")).unwrap(), data);
    // The cut transfers were resumed with Range requests from where they stopped.
    let log = server.log.lock().unwrap().clone();
    let ranges: Vec<u64> = log.iter().filter_map(|(_, r)| r.as_ref()).map(|r| r[6..r.len() - 1].parse().unwrap()).collect();
    assert!(ranges.len() >= 2 && ranges.iter().all(|&r| r > 0), "{log:?}");
    assert!(!zoo.model_dir().join("tiny.pth.part").exists());
}

#[test]
fn an_interrupted_download_is_resumed_by_the_next_command() {
    let data = checkpoint();
    let server = file_server(data.clone(), 1);
    let zoo = Zoo::new(&format!("kind = \"url\"\nurl = \"{}/tiny.pth\"", server.base), Some(&sha256_hex(&data)));
    let first = zoo.run(&["download", "tiny-sn", "--retries", "0", "-q"], &[]);
    assert_eq!(first.status.code(), Some(1));
    let part = zoo.model_dir().join("tiny.pth.part");
    let kept = std::fs::metadata(&part).unwrap().len();
    assert!(kept > 0 && (kept as usize) < data.len());
    let second = zoo.run(&["download", "tiny-sn", "--retries", "0", "-q"], &[]);
    assert_ok(&second);
    let last = server.log.lock().unwrap().last().cloned().unwrap();
    assert_eq!(last.1, Some(format!("bytes={kept}-")));
    assert_eq!(std::fs::read(zoo.model_dir().join("tiny.pth")).unwrap(), data);
}

#[test]
fn a_wrong_checksum_leaves_nothing_usable() {
    let data = checkpoint();
    let server = file_server(data.clone(), 0);
    let zoo = Zoo::new(&format!("kind = \"url\"\nurl = \"{}/tiny.pth\"", server.base), Some(&"0".repeat(64)));
    let out = zoo.run(&["download", "tiny-sn", "-q"], &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("checksum mismatch") && err.contains(&sha256_hex(&data)), "{err}");
    let names: Vec<String> =
        std::fs::read_dir(zoo.model_dir()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert_eq!(names.len(), 1, "{names:?}");
    assert!(names[0].starts_with("tiny.pth.bad-"), "{names:?}");
    // Nothing usable: the name does not resolve to weights without a new, verified download.
    let again = zoo.run(&["classify", "tiny-sn", fixture("images/chelsea_420.jpg").to_str().unwrap()], &[]);
    assert_eq!(again.status.code(), Some(1));
    // --sha256 overrides the card: the right checksum downloads and converts.
    let ok = zoo.run(&["download", "tiny-sn", "--sha256", &sha256_hex(&data), "-q"], &[]);
    assert_ok(&ok);
}

#[test]
fn google_drive_large_file_confirmation() {
    let data = checkpoint();
    let id = "1AbC-dEf_123";
    let served = data.clone();
    let server = serve(Arc::new(move |req: &Request| {
        if req.path == format!("/uc?export=download&id={id}") {
            let page = format!(
                r#"<!DOCTYPE html><html><head><title>Google Drive - Virus scan warning</title></head><body><p>Google Drive can't scan this file for viruses.</p><form id="download-form" action="/download" method="get"><input type="submit" id="uc-download-link" value="Download anyway"/><input type="hidden" name="id" value="{id}"><input type="hidden" name="export" value="download"><input type="hidden" name="confirm" value="t"><input type="hidden" name="uuid" value="0d1e-77"></form></body></html>"#
            );
            return Response {
                status: 200,
                headers: vec![("Content-Type".into(), "text/html; charset=utf-8".into())],
                body: page.into_bytes(),
                cut_after: None,
            };
        }
        if req.path == format!("/download?id={id}&export=download&confirm=t&uuid=0d1e-77") {
            return range_response(req, &served, false, vec![]);
        }
        Response { status: 404, headers: vec![], body: vec![], cut_after: None }
    }));
    // The look-alike's form action is relative (Drive's is absolute): both resolve.
    let zoo = Zoo::new(
        &format!("kind = \"google_drive\"\nid = \"{id}\"\nurl = \"https://drive.google.com/open?id={id}\""),
        Some(&sha256_hex(&data)),
    );
    let out = zoo.run(&["download", "tiny-sn", "-q"], &[("SNZOO_GDRIVE_ENDPOINT", &server.base)]);
    assert_ok(&out);
    assert!(stdout_last_line(&out).ends_with("model.safetensors"));
    let paths: Vec<String> = server.log.lock().unwrap().iter().map(|(p, _)| p.clone()).collect();
    assert!(paths.iter().any(|p| p.starts_with("/download?")), "{paths:?}");
}

#[test]
fn hugging_face_hub_through_hf_hub() {
    let data = checkpoint();
    let served = data.clone();
    let server = serve(Arc::new(move |req: &Request| {
        if req.path == "/snzoo-test/tiny-sn/resolve/main/tiny.pth" {
            let extra =
                vec![("ETag".into(), "\"0123abcd\"".into()), ("X-Repo-Commit".into(), "c0ffee0000000000000000000000000000000000".into())];
            return range_response(req, &served, false, extra);
        }
        Response { status: 404, headers: vec![], body: vec![], cut_after: None }
    }));
    let zoo = Zoo::new(
        r#"kind = "url"
url = "http://127.0.0.1:9/unused""#,
        Some(&sha256_hex(&data)),
    );
    let out = zoo.run(&["download", "tiny-sn", "--url", "hf://snzoo-test/tiny-sn/tiny.pth", "-q"], &[("HF_ENDPOINT", &server.base)]);
    assert_ok(&out);
    // hf-hub's standard cache layout under HF_HOME.
    let snapshot = zoo.dir.path().join("hf/hub/models--snzoo-test--tiny-sn/snapshots/c0ffee0000000000000000000000000000000000/tiny.pth");
    assert_eq!(std::fs::read(snapshot).unwrap(), data);
    assert_eq!(std::fs::read(zoo.model_dir().join("tiny.pth")).unwrap(), data);
}

#[test]
fn from_file_unknown_checksums_are_recorded_and_names_work_everywhere() {
    let data = checkpoint();
    let zoo = Zoo::new("kind = \"baidu_pan\"\nurl = \"https://pan.baidu.com/s/xyz\"\nnote = \"manual\"", None);
    // Only a manual source: an error that says what to do.
    let out = zoo.run(&["download", "tiny-sn"], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--from-file"));
    let out = zoo.run(&["download", "tiny-sn", "--from-file", fixture("models/tiny-resnet50v1-sn.pth").to_str().unwrap()], &[]);
    assert_ok(&out);
    assert!(String::from_utf8_lossy(&out.stderr).contains("no sha256 is known"), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(std::fs::read_to_string(zoo.model_dir().join("sha256")).unwrap().trim(), sha256_hex(&data));
    // Later uses verify against the recorded checksum.
    let again = zoo.run(&["download", "tiny-sn"], &[]);
    assert_ok(&again);
    assert!(String::from_utf8_lossy(&again.stderr).contains("(recorded)"));

    // The name works for classify and eval; the report carries the claim and the delta, and
    // `list` shows the last measurement.
    let img = fixture("images/chelsea_420.jpg");
    assert_ok(&zoo.run(&["classify", "tiny-sn", img.to_str().unwrap(), "--top", "1"], &[]));
    let report = zoo.dir.path().join("r.json");
    assert_ok(&zoo.run(&["eval", "tiny-sn", "--data", fixture("evalset").to_str().unwrap(), "-o", report.to_str().unwrap(), "-q"], &[]));
    let r: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(r["claim"]["model"], "tiny-sn");
    assert_eq!(r["claim"]["claimed_top1"], 20.0);
    let delta = r["claim"]["delta_top1"].as_f64().unwrap();
    assert!((delta - (r["top1"].as_f64().unwrap() - 20.0)).abs() < 1e-9);
    let list: serde_json::Value = serde_json::from_slice(&zoo.run(&["list", "--json"], &[]).stdout).unwrap();
    let me = list.as_array().unwrap().iter().find(|m| m["name"] == "tiny-sn").unwrap();
    assert_eq!(me["measured_top1"], r["top1"]);
    assert_eq!((me["downloaded"].as_bool(), me["converted"].as_bool()), (Some(true), Some(true)));
}

#[test]
fn list_matches_the_release_table() {
    let out = Command::new(env!("CARGO_BIN_EXE_snzoo"))
        .args(["list", "--json"])
        .env("SNZOO_HOME", tempfile::tempdir().unwrap().path())
        .env_remove("SNZOO_CARDS_DIR")
        .output()
        .unwrap();
    assert_ok(&out);
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let got: Vec<(String, String, f64, f64, bool)> = list
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["name"].as_str().unwrap().contains("-sn-"))
        .map(|m| {
            (
                m["name"].as_str().unwrap().into(),
                m["arch"].as_str().unwrap().into(),
                m["top1"].as_f64().unwrap(),
                m["top5"].as_f64().unwrap(),
                m["using_bn"].as_bool().unwrap(),
            )
        })
        .collect();
    // In the release table's order.
    let want = vec![
        ("resnet101v2-sn-8x32-cosine", "resnet101v2-sn", 78.81, 94.16, true),
        ("resnet101v1-sn-8x32-cosine", "resnet101v1-sn", 78.54, 94.10, true),
        ("resnet50v2-sn-8x32-cosine", "resnet50v2-sn", 77.57, 93.65, true),
        ("resnet50v1-sn-8x32-cosine", "resnet50v1-sn", 77.49, 93.32, true),
        ("resnet50v1-sn-8x32-step", "resnet50v1-sn", 76.92, 93.26, true),
        ("resnet50v1-sn-8x4-step", "resnet50v1-sn", 75.85, 92.70, true),
        ("resnet50v1-sn-8x1-step", "resnet50v1-sn", 75.94, 92.70, false),
    ];
    let want: Vec<(String, String, f64, f64, bool)> = want.into_iter().map(|(a, b, c, d, e)| (a.into(), b.into(), c, d, e)).collect();
    assert_eq!(got, want);
    let names: Vec<&str> = list.as_array().unwrap().iter().map(|m| m["name"].as_str().unwrap()).collect();
    assert_eq!(
        &names[7..],
        ["torchvision-resnet50", "tf-slim-resnet_v1_50", "msra-caffe-resnet50", "fb-resnet-torch-resnet50", "timm-resnet50_gn.a1h_in1k"]
    );
}

/// `inspect` against the softmax of the checkpoint's own `mean_weight`/`var_weight`, computed
/// here from the raw tensors.
#[test]
fn inspect_equals_the_softmax_of_the_weights() {
    let pth = fixture("models/r50v1_nobn_legacy.pth");
    let ck = snzoo_convert::read_torch_checkpoint(&pth).unwrap();
    let raw: HashMap<String, Vec<f64>> = ck.tensors.iter().map(|(k, t)| (k.clone(), t.to_f64_vec())).collect();
    let softmax = |v: &[f64]| {
        let m = v.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let e: Vec<f64> = v.iter().map(|x| (x - m).exp()).collect();
        let s: f64 = e.iter().sum();
        e.into_iter().map(|x| x / s).collect::<Vec<f64>>()
    };
    let out = Command::new(env!("CARGO_BIN_EXE_snzoo")).args(["inspect", "--weights", pth.to_str().unwrap(), "--json"]).output().unwrap();
    assert_ok(&out);
    let layers: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let n_sn = raw.keys().filter(|k| k.ends_with(".mean_weight")).count();
    assert_eq!(layers.len(), n_sn);
    for l in &layers {
        let name = l["layer"].as_str().unwrap();
        for (field, key) in [("mean", "mean_weight"), ("var", "var_weight")] {
            let got: Vec<f64> = l[field].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
            let want = softmax(&raw[&format!("{name}.{key}")]);
            assert_eq!(got.len(), 2, "using_bn false: IN and LN only");
            for (g, w) in got.iter().zip(&want) {
                assert!((g - w).abs() < 1e-6, "{name}.{key}: {got:?} vs {want:?}");
            }
        }
    }
    // The plots: an SVG with one bar per layer, statistic and component, and a PNG.
    let d = tempfile::tempdir().unwrap();
    let (svg, png) = (d.path().join("sn.svg"), d.path().join("sn.png"));
    for p in [&svg, &png] {
        let o = Command::new(env!("CARGO_BIN_EXE_snzoo"))
            .args(["inspect", pth.to_str().unwrap(), "--plot", p.to_str().unwrap()])
            .output()
            .unwrap();
        assert_ok(&o);
    }
    let text = std::fs::read_to_string(&svg).unwrap();
    assert!(text.starts_with("<svg"));
    assert_eq!(text.matches("<rect x=").count(), 2 * 2 * n_sn + 2, "bars + legend");
    assert!(std::fs::read(&png).unwrap().starts_with(b"\x89PNG\r\n\x1a\n"));
    let bad = Command::new(env!("CARGO_BIN_EXE_snzoo")).args(["inspect", pth.to_str().unwrap(), "--plot", "x.gif"]).output().unwrap();
    assert_eq!(bad.status.code(), Some(1));
}

#[test]
fn export_writes_a_hugging_face_folder() {
    let zoo = Zoo::new("kind = \"baidu_pan\"\nurl = \"https://pan.baidu.com/s/xyz\"\nnote = \"manual\"", None);
    assert_ok(&zoo.run(&["download", "tiny-sn", "--from-file", fixture("models/tiny-resnet50v1-sn.pth").to_str().unwrap(), "-q"], &[]));
    let report = zoo.dir.path().join("r.json");
    assert_ok(&zoo.run(&["eval", "tiny-sn", "--data", fixture("evalset").to_str().unwrap(), "-o", report.to_str().unwrap(), "-q"], &[]));
    let out = zoo.dir.path().join("hf");
    assert_ok(&zoo.run(&["export", "tiny-sn", "--hf", out.to_str().unwrap()], &[]));
    let card = std::fs::read_to_string(out.join("README.md")).unwrap();
    assert!(card.starts_with("---\nlicense: mit\nlibrary_name: transformers\n"), "{card}");
    assert!(card.contains("model-index:\n  - name: \"tiny-sn\"\n"));
    assert!(card.contains("name: \"Top-1 accuracy (claimed)\"") && card.contains("value: 20.00"));
    assert!(card.contains("Top-1 accuracy (measured by snzoo eval)"));
    let cfg: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(cfg["snzoo_arch"], "resnet50v1-sn-w4");
    assert_eq!(cfg["normalization"]["using_bn"], true);
    assert_eq!(cfg["id2label"]["281"], "tabby cat");
    assert_eq!(cfg["label2id"]["tabby cat"], 281);
    // What transformers needs to build the network from the folder alone.
    assert_eq!(cfg["model_type"], "snzoo_resnet");
    assert_eq!(cfg["auto_map"]["AutoModelForImageClassification"], "modeling_snzoo.SnzooResNetForImageClassification");
    for file in ["configuration_snzoo.py", "modeling_snzoo.py", "image_processing_snzoo.py"] {
        assert!(std::fs::read_to_string(out.join(file)).unwrap().contains("class Snzoo"), "{file}");
    }
    let pre: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("preprocessor_config.json")).unwrap()).unwrap();
    assert_eq!(pre["auto_map"]["AutoImageProcessor"], "image_processing_snzoo.SnzooImageProcessor");
    assert_eq!(
        (pre["pipeline"].as_str(), pre["resize_shorter_side"].as_u64(), pre["crop_size"].as_u64()),
        (Some("torchvision"), Some(256), Some(224))
    );
    assert!(pre["mean_image"].is_null());
    // The exported weights classify like the original.
    let img = fixture("images/chelsea_420.jpg");
    let a = zoo.run(&["classify", "--weights", out.join("model.safetensors").to_str().unwrap(), img.to_str().unwrap(), "--json"], &[]);
    let b = zoo
        .run(&["classify", "--weights", fixture("models/tiny-resnet50v1-sn.pth").to_str().unwrap(), img.to_str().unwrap(), "--json"], &[]);
    assert_ok(&a);
    let (a, b): (serde_json::Value, serde_json::Value) =
        (serde_json::from_slice(&a.stdout).unwrap(), serde_json::from_slice(&b.stdout).unwrap());
    assert_eq!(a[0]["top"], b[0]["top"]);
}

/// Nothing a Hub server says may place a file outside the cache: hostile ETags and commits are
/// refused, and so are repository paths that climb out of it.
#[test]
fn hub_answers_cannot_escape_the_cache() {
    let data = checkpoint();
    let outside = tempfile::tempdir().unwrap();
    let target = outside.path().join("x");
    let climb = format!("../../../../../../../../../..{}", target.display());
    for (etag, commit) in [(climb.clone(), "c0ffee0000000000000000000000000000000000".to_string()), ("0123abcd".to_string(), climb.clone())]
    {
        let served = data.clone();
        let (etag2, commit2) = (etag.clone(), commit.clone());
        let server = serve(Arc::new(move |req: &Request| {
            let extra = vec![("ETag".into(), format!("\"{etag2}\"")), ("X-Repo-Commit".into(), commit2.clone())];
            range_response(req, &served, false, extra)
        }));
        let zoo = Zoo::new("kind = \"url\"\nurl = \"http://127.0.0.1:9/unused\"", Some(&sha256_hex(&data)));
        let out = zoo.run(&["download", "tiny-sn", "--url", "hf://snzoo-test/tiny-sn/tiny.pth", "-q"], &[("HF_ENDPOINT", &server.base)]);
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("refusing to use it as a") && !err.contains("panicked"), "{err}");
        assert!(!target.exists(), "a file was written outside the cache");
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
    }
    // A repository path that climbs out is refused before any request.
    let server = file_server(data.clone(), 0);
    let zoo = Zoo::new("kind = \"url\"\nurl = \"http://127.0.0.1:9/unused\"", None);
    let url = format!("hf://org/repo/../../../..{}", target.display());
    let out = zoo.run(&["download", "tiny-sn", "--url", &url, "-q"], &[("HF_ENDPOINT", &server.base)]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not allowed"));
    assert!(server.log.lock().unwrap().is_empty());
    assert!(!target.exists());
}

/// Concurrent downloads into one store take turns: all succeed, and the recorded checksum is
/// the model's. An upload that is not the model, racing a genuine one, never becomes the model.
#[test]
fn concurrent_commands_on_one_store_take_turns() {
    let zoo = Zoo::new("kind = \"baidu_pan\"\nurl = \"https://pan.baidu.com/s/xyz\"\nnote = \"manual\"", None);
    let good = fixture("models/tiny-resnet50v1-sn.pth");
    let bad = zoo.dir.path().join("bad.pth");
    std::fs::write(&bad, b"<html><body>Please sign in</body></html>").unwrap();
    let spawn = |file: &Path| {
        Command::new(env!("CARGO_BIN_EXE_snzoo"))
            .args(["download", "tiny-sn", "--from-file", file.to_str().unwrap(), "-q"])
            .env("SNZOO_HOME", zoo.home())
            .env("SNZOO_CARDS_DIR", zoo.dir.path().join("cards"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let children: Vec<_> = (0..4).map(|_| spawn(&good)).collect();
    for c in children {
        let o = c.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let sha = sha256_hex(&checkpoint());
    assert_eq!(std::fs::read_to_string(zoo.model_dir().join("sha256")).unwrap().trim(), sha);
    assert_eq!(converted_metadata(&zoo.model_dir().join("model.safetensors"))["source_sha256"], sha);
    // A bad upload and a good one at once, in both orders of arrival.
    for _ in 0..2 {
        let (a, b) = (spawn(&bad), spawn(&good));
        let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
        assert_eq!(a.status.code(), Some(1), "{}", String::from_utf8_lossy(&a.stderr));
        assert!(b.status.success(), "{}", String::from_utf8_lossy(&b.stderr));
        assert_eq!(std::fs::read_to_string(zoo.model_dir().join("sha256")).unwrap().trim(), sha);
        assert_eq!(std::fs::read(zoo.model_dir().join("tiny.pth")).unwrap(), checkpoint());
        assert_eq!(converted_metadata(&zoo.model_dir().join("model.safetensors"))["source_sha256"], sha);
    }
    let img = fixture("images/chelsea_420.jpg");
    assert_ok(&zoo.run(&["classify", "tiny-sn", img.to_str().unwrap()], &[]));
}

/// A checksum nobody published is recorded only once the file has converted: a sign-in page or
/// a transfer cut short by a lying server is moved aside, and the genuine file then succeeds.
#[test]
fn only_a_file_that_converts_is_recorded() {
    let zoo = Zoo::new("kind = \"baidu_pan\"\nurl = \"https://pan.baidu.com/s/xyz\"\nnote = \"manual\"", None);
    let page = zoo.dir.path().join("page.html");
    std::fs::write(&page, b"<!DOCTYPE html><html><body>Sign in to continue</body></html>").unwrap();
    let out = zoo.run(&["download", "tiny-sn", "--from-file", page.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(!zoo.model_dir().join("sha256").exists());
    let names: Vec<String> =
        std::fs::read_dir(zoo.model_dir()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert!(names.iter().any(|n| n.starts_with("tiny.pth.invalid-")), "{names:?}");
    assert!(!names.iter().any(|n| n == "tiny.pth" || n == "model.safetensors"), "{names:?}");

    // A server that says the file is shorter than it is: the transfer "completes" truncated.
    let data = checkpoint();
    let short = data.len() / 2;
    let served = data.clone();
    let server = serve(Arc::new(move |_req: &Request| Response {
        status: 200,
        headers: vec![("Content-Type".into(), "application/octet-stream".into())],
        body: served[..short].to_vec(),
        cut_after: None,
    }));
    let cut = Zoo::new(&format!("kind = \"url\"\nurl = \"{}/tiny.pth\"", server.base), None);
    let out = cut.run(&["download", "tiny-sn", "-q"], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(!cut.model_dir().join("sha256").exists());
    // The genuine file then downloads, converts and is recorded.
    let good = file_server(data.clone(), 0);
    let out = cut.run(&["download", "tiny-sn", "--url", &format!("{}/tiny.pth", good.base), "-q"], &[]);
    assert_ok(&out);
    assert_eq!(std::fs::read_to_string(cut.model_dir().join("sha256")).unwrap().trim(), sha256_hex(&data));
}

#[test]
fn a_416_without_a_partial_file_is_reported_as_such() {
    let server = serve(Arc::new(|_req: &Request| Response { status: 416, headers: vec![], body: vec![], cut_after: None }));
    let zoo = Zoo::new(&format!("kind = \"url\"\nurl = \"{}/tiny.pth\"", server.base), None);
    let out = zoo.run(&["download", "tiny-sn", "-q", "--retries", "0"], &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("416") && !err.contains(".part"), "{err}");
}

/// A store where the result cannot be recorded: the evaluation still succeeds, with a warning.
#[test]
fn an_unwritable_results_record_is_a_warning() {
    let zoo = Zoo::new("kind = \"baidu_pan\"\nurl = \"https://pan.baidu.com/s/xyz\"\nnote = \"manual\"", None);
    assert_ok(&zoo.run(&["download", "tiny-sn", "--from-file", fixture("models/tiny-resnet50v1-sn.pth").to_str().unwrap(), "-q"], &[]));
    // results.json cannot be written where a directory is in the way (works even as root).
    std::fs::create_dir_all(zoo.model_dir().join("results.json/x")).unwrap();
    let report = zoo.dir.path().join("r.json");
    let out = zoo.run(&["eval", "tiny-sn", "--data", fixture("evalset").to_str().unwrap(), "-o", report.to_str().unwrap(), "-q"], &[]);
    assert_ok(&out);
    assert!(String::from_utf8_lossy(&out.stderr).contains("warning: the result was not recorded"));
    assert!(report.exists());
}

/// The GroupNorm flow end to end, as for timm's Hub weights: a plain safetensors state dict on a
/// Hub endpoint, a card with the group count and timm's bicubic protocol; downloaded, converted
/// to the card's architecture, classified, evaluated with the card's protocol.
#[test]
fn a_groupnorm_model_from_the_hub() {
    let ck = snzoo_convert::read_torch_checkpoint(&fixture("models/timm_r14_gn_w4_g2.pth")).unwrap();
    let hub_file = snzoo_convert::serialize_safetensors(&ck.tensors, &HashMap::from([("format".to_string(), "pt".to_string())])).unwrap();
    let served = hub_file.clone();
    let server = serve(Arc::new(move |req: &Request| {
        if req.path == "/snzoo-test/tiny-gn/resolve/main/model.safetensors" {
            let extra = vec![
                ("ETag".into(), format!("\"{}\"", sha256_hex(&served))),
                ("X-Repo-Commit".into(), "0123456789abcdef0123456789abcdef01234567".into()),
            ];
            return range_response(req, &served, false, extra);
        }
        Response { status: 404, headers: vec![], body: vec![], cut_after: None }
    }));
    let zoo = Zoo::new("kind = \"hf\"\nrepo = \"snzoo-test/tiny-gn\"\nfile = \"model.safetensors\"", None);
    let card = std::fs::read_to_string(zoo.dir.path().join("cards/tiny-sn.toml"))
        .unwrap()
        .replace("arch = \"resnet50v1-sn-w4\"", "arch = \"resnet14v1-gn-l1.1.1.1-w4-g2\"")
        .replace("file = \"tiny.pth\"", "file = \"tiny-gn.safetensors\"")
        .replace("kind = \"switchable\"\nusing_bn = true", "kind = \"group\"\nusing_bn = false\ngroups = 2")
        .replace("resize = 256", "resize = 238")
        .replace("interpolation = \"bilinear\"", "interpolation = \"bicubic\"\ncrop_pct = 0.94");
    std::fs::write(zoo.dir.path().join("cards/tiny-sn.toml"), card).unwrap();
    let out = zoo.run(&["download", "tiny-sn", "-q"], &[("HF_ENDPOINT", &server.base)]);
    assert_ok(&out);
    let meta = converted_metadata(&zoo.model_dir().join("model.safetensors"));
    assert_eq!((meta["arch"].as_str(), meta["norm"].as_str(), meta["groups"].as_str()), ("resnet14v1-gn-l1.1.1.1-w4-g2", "group", "2"));
    assert!(meta["eval_protocol"].contains("\"bicubic\""), "{}", meta["eval_protocol"]);
    let img = fixture("images/chelsea_420.jpg");
    let c = zoo.run(&["classify", "tiny-sn", img.to_str().unwrap(), "--json"], &[]);
    assert_ok(&c);
    // A ten-class list-file dataset (the model has ten classes).
    let data = zoo.dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    for photo in ["chelsea_420.jpg", "coffee_444.jpg", "rocket_gray.jpg"] {
        std::fs::copy(fixture(&format!("images/{photo}")), data.join(photo)).unwrap();
    }
    let labels = zoo.dir.path().join("labels.txt");
    std::fs::write(&labels, "chelsea_420.jpg 3\ncoffee_444.jpg 7\nrocket_gray.jpg 0\n").unwrap();
    let r = zoo.run(
        &[
            "eval",
            "tiny-sn",
            "--data",
            data.to_str().unwrap(),
            "--labels",
            labels.to_str().unwrap(),
            "--json",
            "-q",
            "--results-csv",
            zoo.dir.path().join("r.csv").to_str().unwrap(),
        ],
        &[],
    );
    assert_ok(&r);
    let report: serde_json::Value = serde_json::from_slice(&r.stdout).unwrap();
    assert_eq!((report["preprocess"]["resize"].as_u64(), report["preprocess"]["interpolation"].as_str()), (Some(238), Some("bicubic")));
    assert_eq!(report["weights"]["using_bn"], false);
    let csv = std::fs::read_to_string(zoo.dir.path().join("r.csv")).unwrap();
    assert!(csv.lines().nth(1).unwrap().ends_with(",224,0.940,bicubic"), "{csv}");
    // The exported folder describes the GroupNorm network.
    let hf = zoo.dir.path().join("export");
    assert_ok(&zoo.run(&["export", "tiny-sn", "--hf", hf.to_str().unwrap()], &[]));
    let cfg: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(hf.join("config.json")).unwrap()).unwrap();
    assert_eq!(cfg["normalization"]["type"], "group");
    assert_eq!(cfg["normalization"]["groups"], 2);
    assert_eq!(cfg["architectures"][0], "SnzooResNetForImageClassification");
    assert_eq!(cfg["preprocessing"]["interpolation"], "bicubic");
}

/// A server of fixed files by path.
fn files_server(files: Vec<(&'static str, Vec<u8>)>) -> Server {
    serve(Arc::new(move |req: &Request| match files.iter().find(|(p, _)| *p == req.path) {
        Some((_, data)) => range_response(req, data, false, vec![]),
        None => Response { status: 404, headers: vec![], body: b"not found".to_vec(), cut_after: None },
    }))
}

/// A zoo whose only card is `card` (named `name`).
fn zoo_with_card(name: &str, card: &str) -> Zoo {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("cards")).unwrap();
    std::fs::write(dir.path().join(format!("cards/{name}.toml")), card).unwrap();
    Zoo { dir }
}

/// The card of a baseline's tiny fixture network: the real card's protocol, `extra` lines.
fn baseline_card(name: &str, arch: &str, file: &str, eval: &str, extra: &str) -> String {
    format!(
        r#"name = "{name}"
title = "test"
arch = "{arch}"
loadable = true
format = "test"
file = "{file}"
license = "MIT"
paper = "test"
repository = "test"

[normalization]
kind = "batch"
using_bn = true

[claimed]
top1 = 20.0
top5 = 50.0

[eval]
{eval}
{extra}
"#
    )
}

/// The `[eval]` section of a bundled card.
fn eval_section(card: &str) -> String {
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../model_cards").join(format!("{card}.toml"))).unwrap();
    let start = text.find("[eval]\n").unwrap() + 7;
    let end = text[start..].find("\n[").map_or(text.len(), |e| start + e);
    text[start..end].to_string()
}

fn npy_data_sha256(path: &Path) -> String {
    let (_, v) = snzoo_convert::npy::read_npy_f32(path).unwrap();
    sha256_hex(&v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>())
}

fn protocol_entry(file: &str, key: &str, image: &str) -> serde_json::Value {
    let j: serde_json::Value = serde_json::from_slice(&std::fs::read(fixture(&format!("images/{file}"))).unwrap()).unwrap();
    j[key].as_array().unwrap().iter().find(|e| e["image"] == image).unwrap().clone()
}

fn tar_gz(members: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast()));
    for (name, data) in members {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, name, *data).unwrap();
    }
    b.into_inner().unwrap().finish().unwrap()
}

/// TF-Slim's release: a `.tar.gz` holding a V1 checkpoint, downloaded, converted to its layout,
/// classified with slim's preprocessing (the input saved is TensorFlow's, bit for bit).
#[test]
fn tf_slim_release_archive_end_to_end() {
    let ckpt = std::fs::read(fixture("frameworks/slim/tiny.ckpt")).unwrap();
    let server = files_server(vec![("/models/resnet_v1_tiny.tar.gz", tar_gz(&[("resnet_v1_tiny.ckpt", &ckpt)]))]);
    let source = format!("[[sources]]\nkind = \"url\"\nurl = \"{}/models/resnet_v1_tiny.tar.gz\"", server.base);
    let card = baseline_card(
        "slim-tiny",
        "resnet20v1-bn-l2.1.2.1-w4-slim",
        "resnet_v1_tiny.tar.gz",
        &eval_section("tf-slim-resnet_v1_50"),
        &source,
    );
    let zoo = zoo_with_card("slim-tiny", &card);
    assert_ok(&zoo.run(&["download", "slim-tiny", "-q"], &[]));
    let meta = converted_metadata(&zoo.home().join("models/slim-tiny/model.safetensors"));
    assert_eq!(meta["style"], "slim");
    assert_eq!(meta["source_format"], "TensorFlow V1 checkpoint (in resnet_v1_tiny.tar.gz)");
    assert!(meta["eval_protocol"].contains("\"tf-slim\""), "{}", meta["eval_protocol"]);
    let saved = zoo.dir.path().join("input.npy");
    let out = zoo.run(
        &["classify", "slim-tiny", fixture("images/chelsea_420.jpg").to_str().unwrap(), "--save-input", saved.to_str().unwrap(), "--json"],
        &[],
    );
    assert_ok(&out);
    assert_eq!(
        npy_data_sha256(&saved),
        protocol_entry("slim_protocol.json", "images", "chelsea_420.jpg")["tensor_sha256"].as_str().unwrap()
    );
    let info = zoo.run(&["info", "slim-tiny"], &[]);
    assert!(
        String::from_utf8_lossy(&info.stdout).contains("tf-slim pipeline: Resize(256, bilinear)"),
        "{}",
        String::from_utf8_lossy(&info.stdout)
    );
    let hf = zoo.dir.path().join("export");
    assert_ok(&zoo.run(&["export", "slim-tiny", "--hf", hf.to_str().unwrap()], &[]));
    let cfg: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(hf.join("config.json")).unwrap()).unwrap();
    assert_eq!((cfg["layout"].as_str(), cfg["preprocessing"]["pipeline"].as_str()), (Some("slim"), Some("tf-slim")));
}

/// MSRA's model and mean image, both fetched by hand: `--from-file` twice, told apart by
/// extension, the mean image verified against the card's sha256 and stored with the weights;
/// the input saved is the Caffe way (BGR 0–255 crop minus the mean image).
#[test]
fn msra_caffe_model_and_mean_image_by_hand() {
    use prost::Message;
    let zoo_dir = tempfile::tempdir().unwrap();
    // A 224×224 per-pixel BGR mean, written as Caffe writes it (legacy 4-D fields).
    let mean: Vec<f32> = (0..3 * 224 * 224).map(|i| 100.0 + (i % 29) as f32 * 0.75).collect();
    let blob = snzoo_convert::proto::caffe::BlobProto {
        num: Some(1),
        channels: Some(3),
        height: Some(224),
        width: Some(224),
        data: mean.clone(),
        ..Default::default()
    };
    let mean_file = zoo_dir.path().join("ResNet_mean.binaryproto");
    std::fs::write(&mean_file, blob.encode_to_vec()).unwrap();
    let mean_sha = sha256_hex(&std::fs::read(&mean_file).unwrap());
    let extra = format!(
        "[[extra_files]]\nfile = \"ResNet_mean.binaryproto\"\nrole = \"mean_image\"\nsha256 = \"{mean_sha}\"\n\n[[sources]]\nkind = \"manual\"\nurl = \"https://example.invalid/onedrive\"\nnote = \"by hand\""
    );
    let card = baseline_card(
        "msra-tiny",
        "resnet20v1-bn-l2.1.2.1-w4-msra",
        "ResNet-tiny-model.caffemodel",
        &eval_section("msra-caffe-resnet50"),
        &extra,
    );
    let zoo = zoo_with_card("msra-tiny", &card);
    // Without the files: the message says where to get them.
    let out = zoo.run(&["download", "msra-tiny", "-q"], &[]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("https://example.invalid/onedrive"), "{}", String::from_utf8_lossy(&out.stderr));
    // The model alone: the mean image is missing, and said so.
    let model = fixture("frameworks/caffe/tiny.caffemodel");
    let out = zoo.run(&["download", "msra-tiny", "-q", "--from-file", model.to_str().unwrap()], &[]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("also needs ResNet_mean.binaryproto"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A wrong mean image is refused by its checksum.
    let wrong = zoo_dir.path().join("other.binaryproto");
    std::fs::write(&wrong, snzoo_convert::proto::caffe::BlobProto { data: vec![1.0], ..blob.clone() }.encode_to_vec()).unwrap();
    let out =
        zoo.run(&["download", "msra-tiny", "-q", "--from-file", model.to_str().unwrap(), "--from-file", wrong.to_str().unwrap()], &[]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("checksum mismatch"), "{}", String::from_utf8_lossy(&out.stderr));
    let out =
        zoo.run(&["download", "msra-tiny", "-q", "--from-file", mean_file.to_str().unwrap(), "--from-file", model.to_str().unwrap()], &[]);
    assert_ok(&out);
    let meta = converted_metadata(&zoo.home().join("models/msra-tiny/model.safetensors"));
    assert_eq!((meta["style"].as_str(), meta["source_format"].as_str()), ("msra", "Caffe model"));
    let saved = zoo.dir.path().join("input.npy");
    let photo = "coffee_444.jpg";
    assert_ok(&zoo.run(
        &["classify", "msra-tiny", fixture(&format!("images/{photo}")).to_str().unwrap(), "--save-input", saved.to_str().unwrap()],
        &[],
    ));
    // Adding the mean back gives OpenCV's 8-bit BGR crop.
    let (shape, x) = snzoo_convert::npy::read_npy_f32(&saved).unwrap();
    assert_eq!(shape, vec![1, 3, 224, 224]);
    let n = 224 * 224;
    let crop: Vec<u8> = (0..n)
        .flat_map(|i| (0..3).map(move |c| (c, i)))
        .map(|(c, i)| {
            let v = x[c * n + i] + mean[c * n + i];
            assert_eq!(v, v.round(), "not an 8-bit value");
            v as u8
        })
        .collect();
    assert_eq!(sha256_hex(&crop), protocol_entry("caffe_protocol.json", "images", photo)["crop_sha256"].as_str().unwrap());
}

/// fb.resnet.torch's `resnet-50.t7` from its URL, classified with Lua Torch's preprocessing
/// (the input saved is the one torch/image computes, bit for bit).
#[test]
fn fb_resnet_torch_model_end_to_end() {
    let server = files_server(vec![("/resnet-tiny.t7", std::fs::read(fixture("frameworks/torch7/tiny.t7")).unwrap())]);
    let source = format!("[[sources]]\nkind = \"url\"\nurl = \"{}/resnet-tiny.t7\"", server.base);
    let card =
        baseline_card("fb-tiny", "resnet20v1-bn-l2.1.2.1-w4-fbtorch", "resnet-tiny.t7", &eval_section("fb-resnet-torch-resnet50"), &source);
    let zoo = zoo_with_card("fb-tiny", &card);
    assert_ok(&zoo.run(&["download", "fb-tiny", "-q"], &[]));
    let saved = zoo.dir.path().join("input.npy");
    assert_ok(
        &zoo.run(
            &["classify", "fb-tiny", fixture("images/hubble_odd.jpg").to_str().unwrap(), "--save-input", saved.to_str().unwrap()],
            &[],
        ),
    );
    assert_eq!(
        npy_data_sha256(&saved),
        protocol_entry("fbtorch_protocol.json", "photos", "hubble_odd.jpg")["input_sha256"].as_str().unwrap()
    );
    // Evaluation runs the same pipeline (and says which).
    let data = zoo.dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    for photo in ["chelsea_420.jpg", "coffee_444.jpg"] {
        std::fs::copy(fixture(&format!("images/{photo}")), data.join(photo)).unwrap();
    }
    let labels = zoo.dir.path().join("labels.txt");
    std::fs::write(&labels, "chelsea_420.jpg 3\ncoffee_444.jpg 7\n").unwrap();
    let r = zoo.run(&["eval", "fb-tiny", "--data", data.to_str().unwrap(), "--labels", labels.to_str().unwrap(), "--json", "-q"], &[]);
    assert_ok(&r);
    let report: serde_json::Value = serde_json::from_slice(&r.stdout).unwrap();
    assert_eq!(report["preprocess"]["pipeline"], "fbtorch", "{report}");
}

/// `eval --all-local` takes every converted zoo model; its leaderboard carries each card's claim
/// and the measured difference.
#[test]
fn all_local_models_make_a_leaderboard_with_claims() {
    let zoo = Zoo::new("kind = \"baidu_pan\"\nurl = \"https://pan.baidu.com/s/xyz\"\nnote = \"manual\"", None);
    // Nothing converted yet: a clear error.
    let out = zoo.dir.path().join("board");
    let none =
        zoo.run(&["eval", "--all-local", "--data", fixture("evalset").to_str().unwrap(), "--output-dir", out.to_str().unwrap()], &[]);
    assert_eq!(none.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&none.stderr).contains("no zoo model is converted"));
    assert_ok(&zoo.run(&["download", "tiny-sn", "--from-file", fixture("models/tiny-resnet50v1-sn.pth").to_str().unwrap(), "-q"], &[]));
    let r =
        zoo.run(&["eval", "--all-local", "--data", fixture("evalset").to_str().unwrap(), "--output-dir", out.to_str().unwrap(), "-q"], &[]);
    assert_ok(&r);
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("tiny-sn.json")).unwrap()).unwrap();
    let (top1, top5) = (report["top1"].as_f64().unwrap(), report["top5"].as_f64().unwrap());
    let md = std::fs::read_to_string(out.join("leaderboard.md")).unwrap();
    let row = md.lines().find(|l| l.starts_with("| tiny-sn |")).unwrap_or_else(|| panic!("{md}"));
    let want = format!("| 20.00 | {top1:.3} | {:+.2} | 50.00 | {top5:.3} | {:+.2} |", top1 - 20.0, top5 - 50.0);
    assert!(row.ends_with(&want), "{row} vs {want}");
    assert_eq!(md.lines().count(), 3, "only the converted model: {md}");
    let csv = std::fs::read_to_string(out.join("leaderboard.csv")).unwrap();
    assert!(csv.lines().nth(1).unwrap().starts_with(&format!("tiny-sn,{top1:.3},")), "{csv}");
}
