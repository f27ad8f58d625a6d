//! `snzoo inspect`: the learned importance of IN / LN / BN in every SN layer, as a table, JSON,
//! or a stacked-bar figure like the SN paper's (SVG; PNG rasterised from it).

use std::path::PathBuf;

use anyhow::{bail, Context, Result};

#[derive(Debug, clap::Args)]
pub struct InspectArgs {
    #[command(flatten)]
    pub model: super::ModelArg,
    /// Print JSON: [{"layer", "mean": [in, ln, bn], "var": [in, ln, bn]}, ...] (two entries without BN).
    #[arg(long)]
    pub json: bool,
    /// Draw the importances per layer as stacked bars (means above, variances below): FILE.svg or FILE.png.
    #[arg(long, value_name = "FILE.svg|FILE.png")]
    pub plot: Option<PathBuf>,
}

/// One SN layer's softmax(mean_weight) and softmax(var_weight).
#[derive(Debug, Clone, serde::Serialize)]
pub struct LayerImportance {
    pub layer: String,
    pub mean: Vec<f64>,
    pub var: Vec<f64>,
}

const COLORS: [&str; 3] = ["#4c72b0", "#dd8452", "#55a868"]; // IN, LN, BN
const NAMES: [&str; 3] = ["IN", "LN", "BN"];

/// The figure as SVG: one stacked bar per layer and statistic (mean, var), IN/LN/BN shares.
pub fn svg(title: &str, layers: &[LayerImportance]) -> String {
    let (bar, gap, left, top, panel_h, label_h) = (10.0, 3.0, 60.0, 50.0, 160.0, 120.0);
    let width = left + layers.len() as f64 * (bar + gap) + 120.0;
    let height = top + 2.0 * (panel_h + label_h) + 20.0;
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width:.0}\" height=\"{height:.0}\" viewBox=\"0 0 {width:.0} {height:.0}\" font-family=\"DejaVu Sans, Arial, sans-serif\" font-size=\"11\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n<text x=\"{left}\" y=\"24\" font-size=\"15\">{}</text>\n",
        xml_escape(title)
    );
    for (p, (label, pick)) in [("means: softmax(mean_weight)", 0usize), ("variances: softmax(var_weight)", 1)].iter().enumerate() {
        let y0 = top + p as f64 * (panel_h + label_h);
        s.push_str(&format!("<text x=\"{left}\" y=\"{:.1}\">{label}</text>\n", y0 - 6.0));
        for (t, frac) in [0.0, 0.5, 1.0].iter().enumerate() {
            let y = y0 + panel_h * (1.0 - frac);
            s.push_str(&format!(
                "<line x1=\"{:.1}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"#ccc\"/><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>\n",
                left - 4.0, width - 110.0, left - 8.0, y + 4.0, ["0", "0.5", "1"][t]
            ));
        }
        for (i, l) in layers.iter().enumerate() {
            let x = left + i as f64 * (bar + gap);
            let shares = if *pick == 0 { &l.mean } else { &l.var };
            let mut acc = 0.0;
            for (k, v) in shares.iter().enumerate() {
                let h = v * panel_h;
                let y = y0 + panel_h - acc - h;
                s.push_str(&format!(
                    "<rect x=\"{x:.1}\" y=\"{y:.2}\" width=\"{bar}\" height=\"{h:.2}\" fill=\"{}\"><title>{} {}: {v:.4}</title></rect>\n",
                    COLORS[k],
                    xml_escape(&l.layer),
                    NAMES[k]
                ));
                acc += h;
            }
            let ly = y0 + panel_h + 6.0;
            s.push_str(&format!(
                "<text x=\"{:.1}\" y=\"{ly:.1}\" font-size=\"8\" transform=\"rotate(90 {:.1} {ly:.1})\">{}</text>\n",
                x + 2.0,
                x + 2.0,
                xml_escape(&l.layer)
            ));
        }
    }
    let n = layers.first().map_or(3, |l| l.mean.len());
    for k in 0..n {
        let y = top + 20.0 * k as f64;
        let x = width - 100.0;
        s.push_str(&format!(
            "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"12\" height=\"12\" fill=\"{}\"/><text x=\"{:.1}\" y=\"{:.1}\">{}</text>\n",
            COLORS[k],
            x + 18.0,
            y + 10.0,
            NAMES[k]
        ));
    }
    s.push_str("</svg>\n");
    s
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Rasterises an SVG to PNG (text is drawn with the system's fonts, where it has some).
fn png(svg: &str) -> Result<Vec<u8>> {
    let mut opt = resvg::usvg::Options::default();
    opt.fontdb_mut().load_system_fonts();
    let tree = resvg::usvg::Tree::from_str(svg, &opt).context("cannot parse the figure")?;
    let size = tree.size().to_int_size();
    let mut pixmap = resvg::tiny_skia::Pixmap::new(size.width(), size.height()).context("figure too large")?;
    resvg::render(&tree, resvg::tiny_skia::Transform::default(), &mut pixmap.as_mut());
    pixmap.encode_png().context("cannot encode PNG")
}

pub fn run(args: &InspectArgs) -> Result<()> {
    let spec = args.model.spec();
    let model = snzoo::Model::open_with(&spec, &snzoo::ModelOptions::default(), &mut super::logger("snzoo", args.json))?;
    let (path, card) = (model.weights_path(), model.card());
    let layers: Vec<LayerImportance> = model
        .network()
        .switch_norms()
        .into_iter()
        .map(|(layer, sn)| Ok(LayerImportance { layer, mean: sn.mean_importance()?, var: sn.var_importance()? }))
        .collect::<candle_core::Result<_>>()?;
    if layers.is_empty() {
        bail!("{} has no Switchable Normalization layers", path.display());
    }
    if let Some(p) = &args.plot {
        let title = format!("{}: importance of IN / LN / BN per SN layer", card.map_or(model.config().arch_name(), |c| c.name.clone()));
        let doc = svg(&title, &layers);
        let bytes = match p.extension().and_then(|e| e.to_str()).map(|e| e.to_ascii_lowercase()) {
            Some(e) if e == "svg" => doc.into_bytes(),
            Some(e) if e == "png" => png(&doc)?,
            _ => bail!("{}: the plot file must end in .svg or .png", p.display()),
        };
        let target = snzoo::snzoo_fs::check_output(p, &[path])?;
        snzoo::snzoo_fs::write_atomic(&target, &bytes).with_context(|| format!("cannot write {}", p.display()))?;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&layers)?);
        return Ok(());
    }
    let bn = model.config().using_bn();
    println!(
        "{:<24} {:>24}   {:>24}",
        "layer",
        if bn { "mean: IN    LN    BN" } else { "mean: IN    LN" },
        if bn { "var: IN    LN    BN" } else { "var: IN    LN" }
    );
    for l in &layers {
        let f = |v: &[f64]| v.iter().map(|x| format!("{x:.3}")).collect::<Vec<_>>().join("  ");
        println!("{:<24} {:>24}   {:>24}", l.layer, f(&l.mean), f(&l.var));
    }
    let avg = |pick: fn(&LayerImportance) -> &Vec<f64>| -> Vec<String> {
        let n = pick(&layers[0]).len();
        (0..n).map(|k| format!("{:.3}", layers.iter().map(|l| pick(l)[k]).sum::<f64>() / layers.len() as f64)).collect()
    };
    println!(
        "{:<24} {:>24}   {:>24}",
        format!("average of {} layers", layers.len()),
        avg(|l| &l.mean).join("  "),
        avg(|l| &l.var).join("  ")
    );
    Ok(())
}
