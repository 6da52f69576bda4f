use super::*;
use crate::quant::workbench;

/// A wider type the model refuses leaves the step in float with the refusal as its note,
/// which the text and the HTML table show; a weight the type suits is widened.
#[test]
fn a_refused_wider_type_keeps_its_reason() {
    let torch = workbench("resnet8_int8_torch").unwrap();
    let float = workbench("resnet8_float").unwrap();
    let row = |tensor: &str, role| RankRow {
        tensor: tensor.into(),
        role,
        accuracy: 0.0,
        gain_pp: 0.0,
    };
    let w = row("conv2d.weight", Role::Weight);
    let (wide, note) = widen(&torch, &w, Some(QDtype::Int16), &float).unwrap();
    assert!(wide.is_none());
    assert!(
        note.starts_with("int16 not possible: ") && note.contains("TorchScript"),
        "{note}"
    );
    let (_, none) = widen(
        &torch,
        &row("conv2d", Role::Activation),
        Some(QDtype::Int16),
        &float,
    )
    .unwrap();
    assert_eq!(none, "", "an activation is not offered the wider type");
    let onnx = workbench("resnet8_int8").unwrap();
    let (wide, ok) = widen(&onnx, &w, Some(QDtype::Int16), &float).unwrap();
    assert_eq!(
        (wide.map(|(_, t)| t), ok.as_str()),
        (Some(QDtype::Int16), "")
    );

    let step = |form: &str, note: &str| RepairStep {
        floats: 1,
        tensor: "conv2d.weight".into(),
        form: form.into(),
        note: note.into(),
        accuracy: 0.5,
        holdout_accuracy: 0.5,
    };
    let r = Repair {
        model: torch.name().into(),
        float: float.name().into(),
        budget_pp: 1.0,
        calib_images: 10,
        holdout_images: 10,
        float_accuracy: 0.6,
        float_holdout_accuracy: 0.6,
        ranking: vec![w],
        kept: vec!["conv2d.weight".into()],
        widened: Vec::new(),
        steps: vec![step("", ""), step("float", &note)],
        within_budget: false,
        holdout_within_budget: false,
        version: torch.clone(),
    };
    let html = r.mime_bundle()["text/html"].as_str().unwrap().to_string();
    assert!(
        html.contains(&format!("float<br><small>{}</small>", escape_html(&note))),
        "{html}"
    );
    assert!(r.to_string().contains(&format!("({note})")));
    assert_eq!(r.to_json()["steps"][1]["note"], note.as_str());
}
