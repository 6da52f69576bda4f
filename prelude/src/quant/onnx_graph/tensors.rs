//! The values of an ONNX tensor: its element type as a [`QDtype`], floats and integers read and
//! written in the layout the type stores (4-bit types two to a byte, low nibble first).

use anyhow::{anyhow, bail, Result};

use super::proto::tensor_proto::DataType;
use super::proto::TensorProto;
use crate::quant::QDtype;

/// The ONNX element type of a [`QDtype`].
pub fn data_type(dtype: QDtype) -> DataType {
    match dtype {
        QDtype::Int4 => DataType::Int4,
        QDtype::Uint4 => DataType::Uint4,
        QDtype::Int8 => DataType::Int8,
        QDtype::Uint8 => DataType::Uint8,
        QDtype::Int16 => DataType::Int16,
        QDtype::Uint16 => DataType::Uint16,
        QDtype::Int32 => DataType::Int32,
    }
}

/// The element type of an integer tensor as a [`QDtype`].
pub fn qdtype(t: &TensorProto) -> Result<QDtype> {
    let code = t.data_type.unwrap_or(0);
    QDtype::ALL
        .into_iter()
        .find(|&d| data_type(d) as i32 == code)
        .ok_or_else(|| {
            anyhow!(
                "tensor `{}` has element type {:?}; the workbench handles {}",
                t.name(),
                DataType::try_from(code),
                crate::quant::dtype::names(&QDtype::ALL)
            )
        })
}

/// How many elements a tensor holds (the product of its dims; 1 for a scalar).
fn element_count(t: &TensorProto) -> usize {
    t.dims.iter().map(|&d| d.max(0) as usize).product()
}

/// `n` 4-bit values from bytes holding two each, the first in the low nibble.
fn unpack_nibbles(bytes: impl Iterator<Item = u8>, n: usize, signed: bool) -> Vec<i32> {
    bytes
        .flat_map(|b| [b & 0x0f, b >> 4])
        .take(n)
        .map(|v| {
            if signed && v >= 8 {
                v as i32 - 16
            } else {
                v as i32
            }
        })
        .collect()
}

/// 4-bit values packed two per byte, the first in the low nibble (ONNX's int4/uint4 layout).
fn pack_nibbles(values: &[i32]) -> Vec<u8> {
    values
        .chunks(2)
        .map(|p| (p[0] as u8 & 0x0f) | ((p.get(1).copied().unwrap_or(0) as u8 & 0x0f) << 4))
        .collect()
}

/// The values of a float32 tensor (raw or typed storage).
pub fn floats(t: &TensorProto) -> Result<Vec<f32>> {
    if t.data_type != Some(DataType::Float as i32) {
        bail!("tensor `{}` is not float32", t.name());
    }
    if let Some(raw) = &t.raw_data {
        Ok(raw
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    } else {
        Ok(t.float_data.clone())
    }
}

/// Replaces the values of a float32 tensor, in the storage it used.
pub fn set_floats(t: &mut TensorProto, values: &[f32]) {
    if t.raw_data.is_some() {
        t.raw_data = Some(values.iter().flat_map(|v| v.to_le_bytes()).collect());
    } else {
        t.float_data = values.to_vec();
    }
}

/// The values of an integer tensor (raw or typed storage; 4-bit values unpacked, two per
/// byte), widened to i32.
pub fn ints(t: &TensorProto) -> Result<Vec<i32>> {
    let dtype = qdtype(t)?;
    let n = element_count(t);
    let Some(raw) = &t.raw_data else {
        if dtype.bits() == 4 {
            // Typed storage holds one packed byte (two values) per int32.
            let bytes = t.int32_data.iter().map(|&v| v as u8);
            return Ok(unpack_nibbles(bytes, n, dtype.signed()));
        }
        return Ok(t.int32_data.clone());
    };
    Ok(match dtype {
        QDtype::Int4 | QDtype::Uint4 => unpack_nibbles(raw.iter().copied(), n, dtype.signed()),
        QDtype::Int8 => raw.iter().map(|&b| b as i8 as i32).collect(),
        QDtype::Uint8 => raw.iter().map(|&b| b as i32).collect(),
        QDtype::Int16 => raw
            .chunks_exact(2)
            .map(|c| i16::from_le_bytes([c[0], c[1]]) as i32)
            .collect(),
        QDtype::Uint16 => raw
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]) as i32)
            .collect(),
        QDtype::Int32 => raw
            .chunks_exact(4)
            .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
    })
}

/// Replaces the values of an integer tensor, in the storage it used (values already checked
/// against the dtype's range; 4-bit values packed two per byte).
pub fn set_ints(t: &mut TensorProto, values: &[i32]) -> Result<()> {
    let dtype = qdtype(t)?;
    if t.raw_data.is_some() {
        t.raw_data = Some(match dtype {
            QDtype::Int4 | QDtype::Uint4 => pack_nibbles(values),
            QDtype::Int8 | QDtype::Uint8 => values.iter().map(|&v| v as u8).collect(),
            QDtype::Int16 | QDtype::Uint16 => values
                .iter()
                .flat_map(|&v| (v as u16).to_le_bytes())
                .collect(),
            QDtype::Int32 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        });
    } else if dtype.bits() == 4 {
        t.int32_data = pack_nibbles(values).into_iter().map(i32::from).collect();
    } else {
        t.int32_data = values.to_vec();
    }
    Ok(())
}

/// A new integer tensor of `dtype` holding `values` (raw bytes when `raw`, else typed storage).
pub fn int_tensor(
    name: &str,
    dtype: QDtype,
    dims: Vec<i64>,
    values: &[i32],
    raw: bool,
) -> TensorProto {
    let mut t = TensorProto {
        name: Some(name.to_string()),
        data_type: Some(data_type(dtype) as i32),
        dims,
        raw_data: raw.then(Vec::new),
        ..Default::default()
    };
    set_ints(&mut t, values).expect("an integer tensor");
    t
}
