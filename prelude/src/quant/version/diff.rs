//! What a version changed against the original: one row per changed field of each quantized
//! tensor (scale, zero point, integer values), and one for each tensor an edit kept in float.

use std::fmt;

use serde::Serialize;

use super::{summary_f32, summary_i32, QuantModel};
use crate::display::{escape_html, MimeBundle, Rich};
use crate::quant::Role;

impl QuantModel {
    /// The parameters that differ from the original, one row per changed field.
    pub fn diff(&self) -> Diff {
        let mut rows = Vec::new();
        // One read of all integers (a TorchScript version would otherwise load once per row).
        let now_ints = self.all_ints();
        for (o, was) in self.original.params.iter().enumerate() {
            let Some(i) = self.params.iter().position(|p| p.tensor == was.tensor) else {
                rows.push(DiffRow {
                    tensor: was.tensor.clone(),
                    role: was.role,
                    field: "quantization".into(),
                    before: format!("{}, scale {}", was.dtype, summary_f32(&was.scales)),
                    after: "kept in float".into(),
                });
                continue;
            };
            let now = &self.params[i];
            if now.scales != was.scales {
                rows.push(DiffRow {
                    tensor: now.tensor.clone(),
                    role: now.role,
                    field: "scale".into(),
                    before: summary_f32(&was.scales),
                    after: summary_f32(&now.scales),
                });
            }
            if now.zero_points != was.zero_points {
                rows.push(DiffRow {
                    tensor: now.tensor.clone(),
                    role: now.role,
                    field: "zero point".into(),
                    before: summary_i32(&was.zero_points),
                    after: summary_i32(&now.zero_points),
                });
            }
            if let (Some(Some(before)), Some(Some(after))) =
                (self.original.ints.get(o), now_ints.get(i))
            {
                let changed = before.iter().zip(after).filter(|(a, b)| a != b).count();
                if changed > 0 {
                    let max = before
                        .iter()
                        .zip(after)
                        .map(|(a, b)| (*a as i64 - *b as i64).abs())
                        .max()
                        .unwrap_or(0);
                    rows.push(DiffRow {
                        tensor: now.tensor.clone(),
                        role: now.role,
                        field: "integer values".into(),
                        before: format!("{} values", before.len()),
                        after: format!("{changed} changed, max |Δ| {max}"),
                    });
                }
            }
        }
        Diff {
            model: self.info.name.clone(),
            history: self.edits.clone(),
            rows,
        }
    }
}

/// One changed field of a version against the original.
#[derive(Debug, Clone, Serialize)]
pub struct DiffRow {
    /// The tensor.
    pub tensor: String,
    /// Its role.
    pub role: Role,
    /// scale, zero point or integer values.
    pub field: String,
    /// In the original.
    pub before: String,
    /// In this version.
    pub after: String,
}

/// What a version changed against the original.
#[derive(Debug, Clone, Serialize)]
pub struct Diff {
    /// Version name.
    pub model: String,
    /// The edits, oldest first.
    pub history: Vec<String>,
    /// Changed fields.
    pub rows: Vec<DiffRow>,
}

impl Diff {
    /// As JSON.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }
}

impl fmt::Display for Diff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{}: {} edit(s), {} changed field(s)",
            self.model,
            self.history.len(),
            self.rows.len()
        )?;
        for r in &self.rows {
            writeln!(f, "  {} {}: {} → {}", r.tensor, r.field, r.before, r.after)?;
        }
        Ok(())
    }
}

impl Rich for Diff {
    fn mime_bundle(&self) -> MimeBundle {
        let mut html = format!(
            "<div class=\"qplay-diff\"><p><b>{}</b> against the original: {} edit(s)</p>\
             <table><thead><tr><th>tensor</th><th>role</th><th>field</th><th>original</th>\
             <th>this version</th></tr></thead><tbody>",
            escape_html(&self.model),
            self.history.len()
        );
        for r in &self.rows {
            html += &format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape_html(&r.tensor),
                r.role,
                r.field,
                escape_html(&r.before),
                escape_html(&r.after)
            );
        }
        html += "</tbody></table></div>";
        let mut b = MimeBundle::new();
        b.insert("text/html".into(), html.into());
        b.insert("text/plain".into(), self.to_string().into());
        b
    }
}

crate::evcxr_display_via_rich!(Diff);
