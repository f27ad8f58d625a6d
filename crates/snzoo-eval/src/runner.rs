//! The evaluation pipeline: worker threads read, decode and preprocess batches while the caller's
//! classifier runs the forward passes in canonical order. At most `2 × threads + 1` batches are in
//! flight, so memory stays flat whatever the dataset size.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{channel, sync_channel, Receiver};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use snzoo_preprocess::EvalTransform;

use crate::dataset::Dataset;
use crate::metrics::{score, FileStamp, ImageResult};

/// Image files larger than this are refused (PIL's pixel limit allows a few hundred MB).
pub const MAX_IMAGE_BYTES: u64 = 1 << 30;

/// Something that turns a normalized batch [N, 3, H, W] into logits [N, classes].
pub trait Classifier {
    fn num_classes(&self) -> usize;
    fn logits(&mut self, input: &[f32], batch: usize) -> Result<Vec<f32>, String>;
}

#[derive(Debug, Clone)]
pub struct RunOptions {
    pub batch_size: usize,
    /// Decoding/preprocessing threads.
    pub threads: usize,
    pub transform: EvalTransform,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError<E: std::fmt::Display> {
    #[error("forward pass failed: {0}")]
    Forward(String),
    #[error("{0}")]
    Callback(E),
}

/// Where the time went, in thread-seconds summed over the workers (forward: the caller's thread).
#[derive(Debug, Default)]
pub struct StageTimes {
    read_ns: AtomicU64,
    decode_ns: AtomicU64,
    preprocess_ns: AtomicU64,
    forward_ns: AtomicU64,
}

/// [`StageTimes`] in seconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StageSeconds {
    pub read: f64,
    pub decode: f64,
    /// Resize, crop and normalize.
    pub preprocess: f64,
    pub forward: f64,
}

impl StageTimes {
    fn add(counter: &AtomicU64, since: Instant) -> Instant {
        let now = Instant::now();
        counter.fetch_add((now - since).as_nanos() as u64, Ordering::Relaxed);
        now
    }

    pub fn seconds(&self) -> StageSeconds {
        let s = |c: &AtomicU64| c.load(Ordering::Relaxed) as f64 / 1e9;
        StageSeconds {
            read: s(&self.read_ns),
            decode: s(&self.decode_ns),
            preprocess: s(&self.preprocess_ns),
            forward: s(&self.forward_ns),
        }
    }
}

struct Job {
    id: usize,
    positions: Vec<usize>,
}

/// One image read and preprocessed: its position, file stamp and input (or why it failed).
type PreparedImage = (usize, Option<FileStamp>, Result<Vec<f32>, String>);
type Prepared = (usize, Vec<PreparedImage>);

/// Reads one image (a regular file only: a FIFO would block) and records its stamp.
fn read_image(path: &std::path::Path) -> (Option<FileStamp>, Result<Vec<u8>, String>) {
    use std::io::Read;
    let mut file = match snzoo_fs::open_regular(path) {
        Ok(f) => f,
        Err(e) => return (None, Err(e.to_string())),
    };
    let stamp = match file.metadata() {
        Ok(m) if m.len() > MAX_IMAGE_BYTES => {
            return (Some(FileStamp::of(&m)), Err(format!("{} bytes, more than the {MAX_IMAGE_BYTES}-byte limit for an image", m.len())))
        }
        Ok(m) => FileStamp::of(&m),
        Err(e) => return (None, Err(format!("cannot read: {e}"))),
    };
    let mut bytes = Vec::with_capacity(stamp.size as usize);
    match file.by_ref().take(MAX_IMAGE_BYTES).read_to_end(&mut bytes) {
        Ok(_) => (Some(stamp), Ok(bytes)),
        Err(e) => (Some(stamp), Err(format!("cannot read: {e}"))),
    }
}

fn prepare(dataset: &Dataset, transform: &EvalTransform, pos: usize, times: &StageTimes) -> (Option<FileStamp>, Result<Vec<f32>, String>) {
    let t = Instant::now();
    let (stamp, bytes) = read_image(&dataset.root.join(&dataset.samples[pos].rel));
    let t = StageTimes::add(&times.read_ns, t);
    (stamp, bytes.and_then(|bytes| decode_and_transform(&bytes, transform, times, t)))
}

fn decode_and_transform(bytes: &[u8], transform: &EvalTransform, times: &StageTimes, t: Instant) -> Result<Vec<f32>, String> {
    let img = snzoo_preprocess::decode_rgb(bytes).map_err(|e| e.to_string())?;
    let t = StageTimes::add(&times.decode_ns, t);
    let crop = transform.crop_image(&img).map_err(|e| e.to_string())?;
    let x = transform.normalize_crop(&crop);
    StageTimes::add(&times.preprocess_ns, t);
    Ok(x)
}

/// Evaluates `selection` (positions in `dataset`), skipping those in `done`. After each batch,
/// in canonical order, `on_batch` receives its results (failed images included); an error from it
/// stops the run. Stage timings are added to `times`.
#[allow(clippy::too_many_arguments)]
pub fn run<C: Classifier, E: std::fmt::Display, F: FnMut(&[ImageResult]) -> Result<(), E>>(
    dataset: &Dataset,
    selection: &[usize],
    done: &HashSet<usize>,
    classifier: &mut C,
    options: &RunOptions,
    times: &StageTimes,
    mut on_batch: F,
) -> Result<(), RunError<E>> {
    let todo: Vec<usize> = selection.iter().copied().filter(|p| !done.contains(p)).collect();
    let batch = options.batch_size.max(1);
    let jobs: Vec<Vec<usize>> = todo.chunks(batch).map(|c| c.to_vec()).collect();
    if jobs.is_empty() {
        return Ok(());
    }
    let threads = options.threads.max(1);
    let max_in_flight = 2 * threads + 1;
    let crop = options.transform.crop;
    let per_image = 3 * crop * crop;

    std::thread::scope(|scope| {
        let (job_tx, job_rx) = channel::<Job>();
        let job_rx = Arc::new(Mutex::new(job_rx));
        let (res_tx, res_rx) = sync_channel::<Prepared>(max_in_flight);
        for _ in 0..threads {
            let job_rx = Arc::clone(&job_rx);
            let res_tx = res_tx.clone();
            let transform = &options.transform;
            scope.spawn(move || loop {
                let job = match job_rx.lock().expect("job queue lock").recv() {
                    Ok(j) => j,
                    Err(_) => return,
                };
                let prepared = job
                    .positions
                    .iter()
                    .map(|&p| {
                        let (stamp, r) = prepare(dataset, transform, p, times);
                        (p, stamp, r)
                    })
                    .collect();
                if res_tx.send((job.id, prepared)).is_err() {
                    return;
                }
            });
        }
        drop(res_tx);
        let result = drive(&jobs, job_tx, &res_rx, max_in_flight, per_image, dataset, classifier, times, &mut on_batch);
        drop(res_rx);
        result
    })
}

#[allow(clippy::too_many_arguments)]
fn drive<C: Classifier, E: std::fmt::Display, F: FnMut(&[ImageResult]) -> Result<(), E>>(
    jobs: &[Vec<usize>],
    job_tx: std::sync::mpsc::Sender<Job>,
    res_rx: &Receiver<Prepared>,
    max_in_flight: usize,
    per_image: usize,
    dataset: &Dataset,
    classifier: &mut C,
    times: &StageTimes,
    on_batch: &mut F,
) -> Result<(), RunError<E>> {
    let mut next_send = 0;
    let mut next_process = 0;
    let mut waiting: BTreeMap<usize, Vec<PreparedImage>> = BTreeMap::new();
    let classes = classifier.num_classes();
    // One batch buffer for the whole run: a fresh one per batch (9.6 MB at batch 16) came back
    // from the allocator as fresh pages, zeroed by the kernel on first touch.
    let mut input: Vec<f32> = Vec::new();
    while next_process < jobs.len() {
        while next_send < jobs.len() && next_send < next_process + max_in_flight {
            job_tx.send(Job { id: next_send, positions: jobs[next_send].clone() }).expect("workers alive");
            next_send += 1;
        }
        let (id, prepared) = res_rx.recv().expect("workers alive while jobs are pending");
        waiting.insert(id, prepared);
        while let Some(prepared) = waiting.remove(&next_process) {
            input.clear();
            input.reserve(prepared.len() * per_image);
            let mut ok = Vec::new();
            let mut results = Vec::with_capacity(prepared.len());
            for (pos, stamp, r) in prepared {
                let label = dataset.samples[pos].label;
                match r {
                    Ok(x) => {
                        input.extend_from_slice(&x);
                        ok.push((pos, label, stamp));
                    }
                    Err(e) => results.push(ImageResult { i: pos, label, top5: vec![], loss: None, error: Some(e), stamp }),
                }
            }
            if !ok.is_empty() {
                let t = Instant::now();
                let logits = classifier.logits(&input, ok.len()).map_err(RunError::Forward)?;
                StageTimes::add(&times.forward_ns, t);
                if logits.len() != ok.len() * classes {
                    return Err(RunError::Forward(format!(
                        "the classifier returned {} logits for {} images of {classes} classes",
                        logits.len(),
                        ok.len()
                    )));
                }
                for (k, (pos, label, stamp)) in ok.into_iter().enumerate() {
                    let mut r = score(pos, label, &logits[k * classes..(k + 1) * classes]);
                    r.stamp = stamp;
                    results.push(r);
                }
            }
            results.sort_by_key(|r| r.i);
            on_batch(&results).map_err(RunError::Callback)?;
            next_process += 1;
        }
    }
    Ok(())
}
