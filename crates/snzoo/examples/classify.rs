//! Classify a photo: `cargo run --release -p snzoo --example classify -- [MODEL] [IMAGE]`
//! (MODEL: a zoo name or a weights file; default: the bundled tiny model and a bundled photo).
fn main() -> Result<(), snzoo::Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let model = match args.first() {
        Some(name) => snzoo::Model::open(name)?,
        None => snzoo::Model::bundled()?,
    };
    let image = match args.get(1) {
        Some(path) => path.into(),
        None => snzoo::bundled::paths()?.1.join("n02123045/chelsea_420.jpg"),
    };
    for p in model.classify_file(&image, 5)? {
        println!("{:>6.2}%  {:>4}  {}", 100.0 * p.prob, p.index, p.label.unwrap_or("?"));
    }
    Ok(())
}
