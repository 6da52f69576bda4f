//! What several test files share.

use qplay::display::Svg;

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
