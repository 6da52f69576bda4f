//! Calibration statistics kept by content — the float model's bytes, the images (as the
//! evaluation cache identifies a selection) and the measured tensors — so that another method or
//! option on the same model and images costs no inference. A [`crate::store::ContentStore`]:
//! - **in memory**, the most recent [`KEEP_STATS`], for this process;
//! - **on disk**, under `paths::cache_dir()/calibration/<key>.json`, for later sessions: each
//!   tensor's range (floats as their bits, so they come back exact) and the counts of every
//!   histogram made (a histogram's edges follow from its range, method and number of bins).
//!
//! A file that cannot be read or does not fit is a miss; one that cannot be written is skipped.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};

use anyhow::Result;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::ranges::{Counted, Histogram, MinMax};
use super::stats::{self, Histograms, Progress, Source, Stats};
use crate::data::to_hex;
use crate::quant::onnx_graph;
use crate::store::{ContentStore, Recent, Stored};

/// Statistics kept in memory (the most recent ones).
pub const KEEP_STATS: usize = 4;

fn memory() -> &'static Mutex<Recent<Stats>> {
    static MEMORY: OnceLock<Mutex<Recent<Stats>>> = OnceLock::new();
    MEMORY.get_or_init(Default::default)
}

/// The statistics: `paths::cache_dir()/calibration/<key>.json`.
static STATISTICS: ContentStore<Stats> =
    ContentStore::new("calibration", KEEP_STATS, usize::MAX, memory);

/// What the statistics are and how they are measured; changed whenever that changes, so files
/// from earlier versions are not read.
const VERSION: &str = "qplay calibration statistics 1";

/// The content key of a collection.
pub fn key(src: &Source<'_>) -> String {
    let mut h = Sha256::new();
    h.update(VERSION.as_bytes());
    h.update(onnx_graph::encode(src.model));
    h.update(crate::quant::cache::key("", src.data, src.indices).as_bytes());
    for t in src.tensors {
        h.update(t.as_bytes());
        h.update([0]);
    }
    to_hex(&h.finalize())
}

/// Forgets every statistic kept, in memory and on disk (for timing a calibration from
/// scratch).
pub fn forget() {
    STATISTICS.forget();
}

fn counted_name(c: Counted) -> &'static str {
    match c {
        Counted::Values => "values",
        Counted::Magnitudes => "magnitudes",
    }
}

impl Stored for Stats {
    fn to_record(&self) -> Value {
        let ranges: Vec<Value> = self
            .seen
            .iter()
            .map(|(t, m)| json!([t, m.min.to_bits(), m.max.to_bits()]))
            .collect();
        let histograms: Vec<Value> = self
            .all_histograms()
            .iter()
            .map(|((counted, bins), h)| {
                let counts: serde_json::Map<String, Value> = h
                    .iter()
                    .map(|(t, h)| (t.clone(), json!(h.counts)))
                    .collect();
                json!({"counted": counted_name(*counted), "bins": bins, "counts": counts})
            })
            .collect();
        json!({"ranges": ranges, "histograms": histograms})
    }

    fn from_record(v: &Value) -> Option<Stats> {
        let mut seen = BTreeMap::new();
        for r in v.get("ranges")?.as_array()? {
            let bits = |i: usize| Some(f32::from_bits(u32::try_from(r.get(i)?.as_u64()?).ok()?));
            let range = MinMax {
                min: bits(1)?,
                max: bits(2)?,
            };
            seen.insert(r.get(0)?.as_str()?.to_string(), range);
        }
        let mut histograms = BTreeMap::new();
        for h in v.get("histograms")?.as_array()? {
            let counted = match h.get("counted")?.as_str()? {
                "values" => Counted::Values,
                "magnitudes" => Counted::Magnitudes,
                _ => return None,
            };
            let bins = usize::try_from(h.get("bins")?.as_u64()?).ok()?;
            let mut by_tensor = BTreeMap::new();
            for (t, counts) in h.get("counts")?.as_object()? {
                let mut hist = Histogram::new(counted, bins, *seen.get(t)?);
                let counts: Vec<u64> = counts
                    .as_array()?
                    .iter()
                    .map(Value::as_u64)
                    .collect::<Option<_>>()?;
                if counts.len() != bins {
                    return None;
                }
                hist.counts = counts;
                by_tensor.insert(t.clone(), hist);
            }
            histograms.insert((counted, bins), Arc::new(by_tensor));
        }
        Some(Stats::new(seen, histograms))
    }
}

/// The ranges of `src`'s tensors (kept from before when measured before), and, with `want`,
/// their histograms counting `want.0` in `want.1` bins.
pub fn collect(
    src: &Source<'_>,
    want: Option<(Counted, usize)>,
    progress: Option<Progress<'_>>,
) -> Result<(Arc<Stats>, Option<Histograms>)> {
    let key = key(src);
    let stats = match STATISTICS.get(&key) {
        Some(stats) => stats,
        None => {
            let stats = Arc::new(match want {
                None => Stats::new(super::extremes::measure(src, progress)?.0, BTreeMap::new()),
                Some(w) => stats::one_pass(src, w, progress)?,
            });
            STATISTICS.put(&key, stats.clone());
            stats
        }
    };
    let Some(want) = want else {
        return Ok((stats, None));
    };
    let (hists, new) = stats.histograms(src, want, progress)?;
    if new {
        // Written again with the new histogram.
        STATISTICS.put(&key, stats.clone());
    }
    Ok((stats, Some(hists)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_brings_back_the_same_bits_and_counts() {
        let seen: BTreeMap<String, MinMax> = [
            (
                "a",
                MinMax {
                    min: -0.1,
                    max: 3.3,
                },
            ),
            (
                "b",
                MinMax {
                    min: 1e-30,
                    max: f32::MAX,
                },
            ),
        ]
        .into_iter()
        .map(|(t, m)| (t.to_string(), m))
        .collect();
        let mut hist = BTreeMap::new();
        for (t, m) in &seen {
            let mut h = Histogram::new(Counted::Magnitudes, 8, *m);
            h.add(&[m.min, m.max, 0.7, 0.7]);
            hist.insert(t.clone(), h);
        }
        let stats = Stats::new(
            seen.clone(),
            [((Counted::Magnitudes, 8), Arc::new(hist))].into(),
        );
        let text = stats.to_record().to_string();
        let back = Stats::from_record(&serde_json::from_str(&text).unwrap()).unwrap();
        for (t, m) in &seen {
            let b = back.seen[t];
            assert_eq!(
                (b.min.to_bits(), b.max.to_bits()),
                (m.min.to_bits(), m.max.to_bits())
            );
        }
        let (a, b) = (stats.all_histograms(), back.all_histograms());
        assert_eq!(a.len(), b.len());
        for ((ka, ha), (kb, hb)) in a.iter().zip(&b) {
            assert_eq!(ka, kb);
            for (t, h) in ha.iter() {
                assert_eq!(h.counts, hb[t].counts);
                assert_eq!(h.edges, hb[t].edges);
            }
        }
        // A record that does not fit is a miss.
        assert!(Stats::from_record(&json!({"ranges": [["a", 1]], "histograms": []})).is_none());
    }
}
