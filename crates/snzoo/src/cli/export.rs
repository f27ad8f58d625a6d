//! `snzoo export --hf DIR`: a Hugging Face model folder: `model.safetensors`, `config.json`
//! (architecture, SN configuration, preprocessing, labels, `auto_map`), `preprocessor_config.json`
//! (with the mean image of a per-pixel mean protocol), the `transformers` remote code of
//! [`snzoo::hf`], and a `README.md` model card with YAML front matter and a `model-index` holding
//! the claimed and any measured results. `--onnx OUT` writes the ONNX graph.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use snzoo::snzoo_eval::report::Report;
use snzoo::snzoo_zoo::{ModelCard, Store};

#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    #[command(flatten)]
    pub model: super::ModelArg,
    /// A Hugging Face folder to write (created if needed; files in it are replaced atomically).
    #[arg(long, value_name = "DIR", required_unless_present = "onnx")]
    pub hf: Option<PathBuf>,
    /// An ONNX file to write: standard operators only, a dynamic batch axis, input `input`
    /// [batch, 3, crop, crop] (the protocol's tensor), output `logits`; the protocol and class
    /// names in its metadata_props.
    #[arg(long, value_name = "OUT.onnx")]
    pub onnx: Option<PathBuf>,
    /// The ONNX opset (13–21).
    #[arg(long, default_value_t = snzoo::onnx::DEFAULT_OPSET, value_parser = clap::value_parser!(i64).range(13..=21))]
    pub opset: i64,
    /// An `snzoo eval` report whose measured top-1/top-5 go into the model card's model-index
    /// (default: the last measurement recorded for a zoo model, if any).
    #[arg(long, value_name = "REPORT.json")]
    pub report: Option<PathBuf>,
}

fn yaml_str(s: &str) -> String {
    serde_json::to_string(s).expect("string") // a JSON string is a valid YAML double-quoted scalar
}

fn metric(kind: &str, value: f64, name: &str) -> String {
    format!("      - type: {kind}\n        value: {value:.2}\n        name: {}\n", yaml_str(name))
}

fn model_card(name: &str, arch: &str, card: Option<&ModelCard>, measured: Option<(f64, f64, String)>) -> String {
    let license = match card.map(|c| c.license.as_str()) {
        Some("CC BY-NC 4.0") => "cc-by-nc-4.0".to_string(),
        Some("MIT") => "mit".to_string(),
        Some(l) if l.starts_with("BSD-3") => "bsd-3-clause".to_string(),
        Some(_) | None => "other".to_string(),
    };
    let mut tags = vec!["image-classification".to_string(), "snzoo".to_string(), "safetensors".to_string()];
    for t in card.map(|c| c.tags.clone()).unwrap_or_default() {
        if !tags.contains(&t) {
            tags.push(t);
        }
    }
    let mut metrics = String::new();
    if let Some(c) = card {
        metrics.push_str(&metric("accuracy", c.claimed.top1, "Top-1 accuracy (claimed)"));
        metrics.push_str(&metric("accuracy", c.claimed.top5, "Top-5 accuracy (claimed)"));
    }
    if let Some((t1, t5, _)) = &measured {
        metrics.push_str(&metric("accuracy", *t1, "Top-1 accuracy (measured by snzoo eval)"));
        metrics.push_str(&metric("accuracy", *t5, "Top-5 accuracy (measured by snzoo eval)"));
    }
    let mut s = String::from("---\n");
    s.push_str(&format!("license: {license}\nlibrary_name: transformers\npipeline_tag: image-classification\n"));
    s.push_str("tags:\n");
    for t in &tags {
        s.push_str(&format!("  - {}\n", yaml_str(t)));
    }
    s.push_str("datasets:\n  - imagenet-1k\nmetrics:\n  - accuracy\n");
    if !metrics.is_empty() {
        s.push_str(&format!(
            "model-index:\n  - name: {}\n    results:\n      - task:\n          type: image-classification\n          name: Image Classification\n        dataset:\n          type: imagenet-1k\n          name: ImageNet-1k\n          split: validation\n        metrics:\n",
            yaml_str(name)
        ));
        for line in metrics.lines() {
            s.push_str(&format!("    {line}\n"));
        }
    }
    s.push_str("---\n\n");
    s.push_str(&format!("# {}\n\n", card.map_or(name.to_string(), |c| c.title.clone())));
    s.push_str(&format!(
        "Architecture `{arch}`, exported by snzoo (weights in `model.safetensors` with the original PyTorch key \
         names; architecture, SN configuration and preprocessing in `config.json`).\n\n"
    ));
    if let Some(c) = card {
        s.push_str(&format!(
            "- Normalization: {} (using_bn = {})\n- Claimed single-crop ImageNet-1k accuracy: top-1 {:.2}, top-5 {:.2} (resize {}, center crop {}, {})\n",
            c.normalization.kind, c.normalization.using_bn, c.claimed.top1, c.claimed.top5, c.eval.resize, c.eval.crop, c.eval.interpolation
        ));
        if let Some(t) = &c.training {
            s.push_str(&format!(
                "- Training: {}, {} GPUs x {} images, {} epochs, {}, initial lr {}, weight decay {}\n",
                t.dataset, t.gpus, t.images_per_gpu, t.epochs, t.schedule, t.initial_lr, t.weight_decay
            ));
        }
        s.push_str(&format!(
            "- Source: {}\n- Licence of the weights: {} (the release's; the code files here: MIT OR Apache-2.0)\n",
            c.repository, c.license
        ));
    }
    if let Some((t1, t5, dataset)) = &measured {
        s.push_str(&format!("- Measured by `snzoo eval` on {dataset}: top-1 {t1:.3}, top-5 {t5:.3}\n"));
    }
    s.push_str("\n## Usage\n\n```sh\nsnzoo classify --weights model.safetensors image.jpg\nsnzoo eval --weights model.safetensors --data /path/to/imagenet/val\n```\n");
    s.push_str(
        "\nIn Python, with `transformers` (the network is built by `modeling_snzoo.py` in this folder, \
         a plain PyTorch ResNet with snzoo's key names; `image_processing_snzoo.py` applies the evaluation \
         protocol of `preprocessor_config.json`):\n\n```python\nfrom transformers import pipeline\n\
         classify = pipeline(\"image-classification\", model=\"path/to/this/folder\", trust_remote_code=True)\n\
         print(classify(\"image.jpg\"))\n```\n",
    );
    if let Some(c) = card {
        s.push_str(&format!("\n## Citation\n\n{}\n", c.paper));
    }
    s
}

fn write(dir: &Path, name: &str, bytes: &[u8], inputs: &[&Path]) -> Result<()> {
    let p = dir.join(name);
    let target = snzoo::snzoo_fs::check_output(&p, inputs)?;
    snzoo::snzoo_fs::write_atomic(&target, bytes).with_context(|| format!("cannot write {}", p.display()))
}

pub fn run(args: &ExportArgs) -> Result<()> {
    let spec = args.model.spec();
    let model = snzoo::Model::open_with(&spec, &snzoo::ModelOptions::default(), &mut super::logger("snzoo", false))?;
    let (path, card) = (model.weights_path().to_path_buf(), model.card());
    if let Some(out) = &args.onnx {
        let target = snzoo::snzoo_fs::check_output(out, &[&path])?;
        let bytes = snzoo::onnx::export_onnx(&model, args.opset)?;
        snzoo::snzoo_fs::write_atomic(&target, &bytes).with_context(|| format!("cannot write {}", out.display()))?;
        println!("{}", out.display());
    }
    let Some(hf) = &args.hf else { return Ok(()) };
    snzoo::snzoo_fs::check_output_dir(hf)?;
    // A checkpoint is converted; a .safetensors (checked when the model was opened) is copied as
    // it is: its metadata holds the architecture.
    let weights = if snzoo::weights::is_safetensors(&path)? {
        snzoo::snzoo_fs::read_regular(&path, u64::MAX)?
    } else {
        let c = snzoo::convert::convert_checkpoint(&path, None)?;
        snzoo::snzoo_convert::serialize_safetensors(&c.tensors, &c.metadata)?
    };
    let mut inputs: Vec<&Path> = vec![&path];
    if let Some(r) = &args.report {
        inputs.push(r);
    }
    std::fs::create_dir_all(hf).with_context(|| format!("cannot create {}", hf.display()))?;
    let config = model.config();
    let measured = match &args.report {
        Some(r) => {
            let rep: Report = serde_json::from_slice(&snzoo::snzoo_fs::read_regular(r, 256 << 20)?)
                .with_context(|| format!("{} is not an snzoo eval report", r.display()))?;
            Some((rep.top1, rep.top5, format!("{} ({} images)", rep.dataset.path, rep.images)))
        }
        None => card
            .and_then(|c| Store::from_env().last_results(&c.name))
            .and_then(|v| Some((v["top1"].as_f64()?, v["top5"].as_f64()?, format!("{} ({} images)", v["dataset"].as_str()?, v["images"])))),
    };
    let name = card.map_or(config.arch_name(), |c| c.name.clone());
    let id2label: serde_json::Map<String, serde_json::Value> = if config.num_classes == snzoo::snzoo_imagenet::NUM_CLASSES {
        snzoo::snzoo_imagenet::classes().iter().map(|c| (c.index.to_string(), serde_json::Value::from(c.name))).collect()
    } else {
        (0..config.num_classes).map(|i| (i.to_string(), serde_json::Value::from(format!("LABEL_{i}")))).collect()
    };
    let t = model.transform();
    let mut normalization = serde_json::to_value(config.norm)?;
    normalization["eps"] = snzoo::snzoo_model::norm::NORM_EPS.into();
    if let Some(c) = card {
        normalization["using_moving_average"] = serde_json::to_value(c.normalization.using_moving_average)?;
        normalization["last_gamma"] = serde_json::to_value(c.normalization.last_gamma)?;
    }
    let label2id: serde_json::Map<String, serde_json::Value> =
        id2label.iter().map(|(i, name)| (name.as_str().unwrap_or_default().to_string(), i.parse::<usize>().unwrap_or(0).into())).collect();
    let cfg = serde_json::json!({
        "architectures": [snzoo::hf::MODEL_CLASS],
        "model_type": snzoo::hf::MODEL_TYPE,
        "auto_map": snzoo::hf::model_auto_map(),
        "library_name": "snzoo",
        "snzoo_arch": config.arch_name(),
        "version": config.version,
        "block": config.block,
        "layers": config.layers,
        "width": config.width,
        "layout": config.style.name(),
        "num_labels": config.num_classes,
        "num_parameters": config.param_count()?,
        "normalization": normalization,
        "image_size": t.crop,
        "preprocessing": {
            "resize_shorter_side": t.resize, "center_crop": t.crop, "interpolation": t.interpolation.as_str(),
            "mean": t.mean, "std": t.std, "channel_order": t.channel_order, "value_range": t.value_range,
            "crop_pct": snzoo::protocol::crop_pct(card, t),
            "pipeline": t.pipeline.as_str(),
            "per_pixel_mean": t.per_pixel_mean.then_some(snzoo::protocol::MEAN_IMAGE_KEY),
        },
        "model_card": card.map(|c| c.name.clone()),
        "id2label": id2label,
        "label2id": label2id,
    });
    write(hf, "model.safetensors", &weights, &inputs)?;
    write(hf, "config.json", format!("{}\n", serde_json::to_string_pretty(&cfg)?).as_bytes(), &inputs)?;
    let pre = snzoo::hf::preprocessor_config(t);
    write(hf, "preprocessor_config.json", format!("{}\n", serde_json::to_string_pretty(&pre)?).as_bytes(), &inputs)?;
    for (file, code) in snzoo::hf::CODE_FILES {
        write(hf, file, code.as_bytes(), &inputs)?;
    }
    write(hf, "README.md", model_card(&name, &config.arch_name(), card, measured).as_bytes(), &inputs)?;
    println!("{}", hf.display());
    Ok(())
}
