//! The integer types a quantized tensor is stored in — the one declaration every part of the
//! workbench reads: each type's width, sign, range, name, the ONNX opset and IR version that
//! first allow it, which types may hold weights and activations, the bit widths that fit a
//! type, and the combinations onnxruntime's CPU provider cannot run.

use std::fmt;
use std::str::FromStr;

use anyhow::{anyhow, bail, Result};
use serde::Serialize;

/// The integer type a tensor is quantized to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum QDtype {
    /// Signed 4 bit, two per byte (ONNX opset 21).
    Int4,
    /// Unsigned 4 bit, two per byte (ONNX opset 21).
    Uint4,
    /// Signed 8 bit.
    Int8,
    /// Unsigned 8 bit.
    Uint8,
    /// Signed 16 bit (ONNX opset 21 in the standard domain).
    Int16,
    /// Unsigned 16 bit (ONNX opset 21 in the standard domain).
    Uint16,
    /// Signed 32 bit (biases).
    Int32,
}

impl QDtype {
    /// Every type.
    pub const ALL: [QDtype; 7] = [
        QDtype::Int4,
        QDtype::Uint4,
        QDtype::Int8,
        QDtype::Uint8,
        QDtype::Int16,
        QDtype::Uint16,
        QDtype::Int32,
    ];

    /// The types a weight or an activation may be stored in: all but int32, which holds
    /// biases only.
    pub const STORAGE: &'static [QDtype] = QDtype::ALL.split_at(6).0;

    /// Bits per value.
    pub fn bits(self) -> u32 {
        match self {
            QDtype::Int4 | QDtype::Uint4 => 4,
            QDtype::Int8 | QDtype::Uint8 => 8,
            QDtype::Int16 | QDtype::Uint16 => 16,
            QDtype::Int32 => 32,
        }
    }

    /// Whether it is signed (two's complement).
    pub fn signed(self) -> bool {
        matches!(
            self,
            QDtype::Int4 | QDtype::Int8 | QDtype::Int16 | QDtype::Int32
        )
    }

    /// The smallest and largest value of the type.
    pub fn range(self) -> (i64, i64) {
        let b = self.bits();
        if self.signed() {
            (-(1i64 << (b - 1)), (1i64 << (b - 1)) - 1)
        } else {
            (0, (1i64 << b) - 1)
        }
    }

    /// The name used in messages, flags and JSON (`int4`, `uint16`, …).
    pub fn name(self) -> &'static str {
        match self {
            QDtype::Int4 => "int4",
            QDtype::Uint4 => "uint4",
            QDtype::Int8 => "int8",
            QDtype::Uint8 => "uint8",
            QDtype::Int16 => "int16",
            QDtype::Uint16 => "uint16",
            QDtype::Int32 => "int32",
        }
    }

    /// The lowest ONNX opset (standard domain) whose QuantizeLinear/DequantizeLinear take the
    /// type: 21 for the 4- and 16-bit types, 10 (where QDQ began) otherwise.
    pub fn min_opset(self) -> i64 {
        match self.bits() {
            4 | 16 => 21,
            _ => 10,
        }
    }

    /// The lowest ONNX IR version that can hold a model using the type (IR 10 added int4 and
    /// goes with opset 21).
    pub fn min_ir_version(self) -> i64 {
        if self.min_opset() >= 21 {
            10
        } else {
            3
        }
    }

    /// Bit widths that fit the type as a grid inside it: 2 to its width.
    pub fn bit_widths(self) -> std::ops::RangeInclusive<u32> {
        2..=self.bits()
    }

    /// Checks that `bits` fits the type; the error names `what`, the type and the widths.
    pub fn check_bits(self, what: &str, bits: u32) -> Result<()> {
        let widths = self.bit_widths();
        if !widths.contains(&bits) {
            bail!(
                "{what} = {bits} is out of range: {} to {} bits fit {self}",
                widths.start(),
                widths.end()
            );
        }
        Ok(())
    }

    /// A storage type for a weight or an activation by name; `what` names the setting in the
    /// error (`weight_type`, `--activation-type`), which lists the allowed names.
    pub fn storage(what: &str, name: &str) -> Result<QDtype> {
        let t: QDtype = name.parse().map_err(|_| {
            anyhow!(
                "{what} = `{name}` is not a type: one of {}",
                names(QDtype::STORAGE)
            )
        })?;
        t.check_storage(what)?;
        Ok(t)
    }

    /// Checks that a weight or activation may be stored in this type.
    pub fn check_storage(self, what: &str) -> Result<()> {
        if !QDtype::STORAGE.contains(&self) {
            bail!(
                "{what} = {self} is not allowed: one of {}",
                names(QDtype::STORAGE)
            );
        }
        Ok(())
    }
}

/// The types' names, comma-separated (for messages listing what is allowed).
pub fn names(types: &[QDtype]) -> String {
    types
        .iter()
        .map(|t| t.name())
        .collect::<Vec<_>>()
        .join(", ")
}

impl fmt::Display for QDtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for QDtype {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<QDtype> {
        let lower = s.trim().to_lowercase();
        QDtype::ALL
            .into_iter()
            .find(|t| t.name() == lower)
            .ok_or_else(|| anyhow!("`{s}` is not a type: one of {}", names(&QDtype::ALL)))
    }
}

/// A combination of storage types that onnxruntime's CPU provider (1.31) cannot run, found by
/// running QDQ graphs with every pair of types at every optimization level.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoCpuKernel {
    /// The weights' type.
    pub weight: QDtype,
    /// The activations' type.
    pub activation: QDtype,
    /// What fails, in onnxruntime's terms.
    pub reason: &'static str,
}

impl fmt::Display for NoCpuKernel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "NoCpuKernel: {} weights with {} activations do not run on onnxruntime's CPU \
             provider: {}",
            self.weight, self.activation, self.reason
        )
    }
}

impl std::error::Error for NoCpuKernel {}

/// `Err(NoCpuKernel)` where onnxruntime's CPU provider has no kernel for weights stored as
/// `weight` with activations stored as `activation`.
pub fn cpu_kernel(weight: QDtype, activation: QDtype) -> std::result::Result<(), NoCpuKernel> {
    // With all graph optimizations (how every session runs), onnxruntime fuses an 8-bit weight's
    // DequantizeLinear and the Conv/MatMul into QLinearConv/QLinearMatMul, which has kernels for
    // 8-bit inputs only: a 4-bit activation feeding it makes the session fail to load.
    if weight.bits() == 8 && activation.bits() == 4 {
        return Err(NoCpuKernel {
            weight,
            activation,
            reason: "its QDQ fusion makes QLinearConv/QLinearMatMul nodes with a 4-bit input, \
                     for which it has no kernel (use 4- or 16-bit weights with 4-bit activations)",
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_and_names() {
        assert_eq!(QDtype::Int4.range(), (-8, 7));
        assert_eq!(QDtype::Uint4.range(), (0, 15));
        assert_eq!(QDtype::Int8.range(), (-128, 127));
        assert_eq!(QDtype::Uint16.range(), (0, 65535));
        assert_eq!(QDtype::Int32.range(), (i32::MIN as i64, i32::MAX as i64));
        for t in QDtype::ALL {
            assert_eq!(t.name().parse::<QDtype>().unwrap(), t);
        }
    }

    #[test]
    fn bad_names_and_widths_are_named() {
        let e = QDtype::storage("--weight-type", "int5")
            .unwrap_err()
            .to_string();
        assert!(e.contains("int5") && e.contains("int4, uint4, int8"), "{e}");
        let e = QDtype::storage("weight_type", "int32")
            .unwrap_err()
            .to_string();
        assert!(e.contains("int32 is not allowed"), "{e}");
        let e = QDtype::Int4
            .check_bits("weight_bits", 8)
            .unwrap_err()
            .to_string();
        assert_eq!(e, "weight_bits = 8 is out of range: 2 to 4 bits fit int4");
        assert!(QDtype::Int16.check_bits("activation_bits", 12).is_ok());
    }
}
