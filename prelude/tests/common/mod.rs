//! What several test files share (each test binary uses part of it).
#![allow(dead_code)]

use std::sync::Once;

use qplay::data::{Bundled, Dataset};
use qplay::display::Svg;
use qplay::quant::{QuantModel, Role};

/// A bundled data set, with this test binary's own cache folder ($QPLAY_CACHE: calibration
/// statistics and evaluations are kept on disk), set once before anything reads it.
pub fn dataset(which: Bundled) -> Dataset {
    static CACHE: Once = Once::new();
    CACHE.call_once(|| {
        let name = format!("qplay-{}-{}", env!("CARGO_CRATE_NAME"), std::process::id());
        std::env::set_var("QPLAY_CACHE", std::env::temp_dir().join(name));
    });
    Dataset::bundled(&qplay::paths::root(), which).unwrap()
}

/// Checks that `svg` is an SVG with text, and with $QPLAY_CHART_DIR set writes it there as
/// `name.svg` (to look at it, e.g. rendered to PNG by headless Chromium).
pub fn keep(name: &str, svg: &Svg) {
    assert!(
        svg.0.starts_with("<svg") && svg.0.contains("<text"),
        "{name}"
    );
    if let Some(dir) = std::env::var_os("QPLAY_CHART_DIR") {
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            std::path::Path::new(&dir).join(format!("{name}.svg")),
            &svg.0,
        )
        .unwrap();
    }
}

/// The first quantized tensor of `role` in `m`'s parameter table.
pub fn first_of(m: &QuantModel, role: Role) -> String {
    let rows = m.quant_params().rows;
    rows.into_iter().find(|r| r.role == role).unwrap().tensor
}
