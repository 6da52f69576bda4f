//! The model's graph: ResNet-8's layout (every operator once, every edge downward, the QDQ
//! pairs folded into edges, weights and biases as badges), overlays equal to the numbers they
//! come from, and the SVG. With $QPLAY_CHART_DIR set, the SVGs are written there.

use std::collections::BTreeSet;

mod common;

use qplay::data::Bundled;
use qplay::display::Rich;
use qplay::quant::graph::NodeKind;
use qplay::quant::sqnr::layer_errors;
use qplay::quant::{graph, sensitivity, workbench, Figure, Knob, Overlay, QDtype, Role};

use common::{dataset, keep};

/// The tensors of the edges that travel in float.
fn float_edges(g: &qplay::quant::Graph) -> Vec<&str> {
    g.edges
        .iter()
        .filter(|e| e.dtype.is_none())
        .map(|e| e.tensor.as_str())
        .collect()
}

#[test]
fn resnet8_layout() {
    let m = workbench("resnet8_int8").unwrap();
    let g = graph(&m).unwrap();
    let proto = m.proto().unwrap().graph.clone().unwrap();
    // Every operator of the protobuf but the Q/DQ nodes, placed once.
    let ops: Vec<&str> = proto
        .node
        .iter()
        .filter(|n| !matches!(n.op_type(), "QuantizeLinear" | "DequantizeLinear"))
        .map(|n| n.name())
        .collect();
    let drawn: Vec<&str> = g
        .nodes
        .iter()
        .filter(|n| n.kind == NodeKind::Op)
        .map(|n| n.name.as_str())
        .collect();
    assert_eq!(drawn, ops);
    assert_eq!(
        ops.len(),
        17,
        "Transpose, 9 Conv, 3 Add, pool, Flatten, Gemm, Softmax"
    );
    assert!(g
        .nodes
        .iter()
        .all(|n| n.op != "QuantizeLinear" && n.op != "DequantizeLinear"));
    assert_eq!(g.nodes.first().unwrap().kind, NodeKind::Input);
    assert_eq!(g.nodes.last().unwrap().kind, NodeKind::Output);
    // No two boxes overlap.
    for i in 0..g.nodes.len() {
        for j in i + 1..g.nodes.len() {
            let (a, b) = (g.layout.pos[i], g.layout.pos[j]);
            assert!(
                (a.1 - b.1).abs() > 1.0 || (a.0 - b.0).abs() >= 150.0,
                "{} and {} overlap",
                g.nodes[i].name,
                g.nodes[j].name
            );
        }
    }
    // Every edge points down, and every route descends.
    for (e, edge) in g.edges.iter().enumerate() {
        assert!(g.layout.layer[edge.from] < g.layout.layer[edge.to]);
        let r = &g.layout.routes[e];
        assert!(r.windows(2).all(|w| w[1].1 > w[0].1), "{}", edge.tensor);
    }
    // The QDQ pairs are folded: every activation row is the tensor of an edge marked with its
    // dtype, and no edge carries a Q/DQ output.
    let params = m.quant_params().rows;
    for p in params.iter().filter(|p| p.role == Role::Activation) {
        let e = g.edges.iter().find(|e| e.tensor == p.tensor);
        let e = e.unwrap_or_else(|| panic!("no edge carries `{}`", p.tensor));
        assert_eq!(e.dtype.as_deref(), Some("int8"), "{}", p.tensor);
    }
    assert!(g.edges.iter().all(|e| !e.tensor.contains("QuantizeLinear")));
    // The 16 activations are quantized; only `input` → Transpose and Softmax → output are
    // float.
    assert_eq!(float_edges(&g), ["input", "output"]);
    // The residual Add reads `activation` from three layers up.
    let add = g.node("add").unwrap();
    let skip = g
        .edges
        .iter()
        .find(|e| e.to == add && e.tensor == "activation")
        .unwrap();
    assert_eq!(g.layout.layer[add] - g.layout.layer[skip.from], 3);
    assert_eq!(
        g.layout.routes[g.edges.iter().position(|e| e == skip).unwrap()].len(),
        4
    );
    // Weights and biases: one badge each, on their operator.
    let badges: BTreeSet<(String, String)> = g
        .nodes
        .iter()
        .flat_map(|n| {
            n.badges
                .iter()
                .map(move |b| (n.name.clone(), b.tensor.clone()))
        })
        .collect();
    let constants: BTreeSet<(String, String)> = params
        .iter()
        .filter(|p| p.role != Role::Activation)
        .map(|p| (p.consumers[0].clone(), p.tensor.clone()))
        .collect();
    assert_eq!(badges, constants);
    assert_eq!(badges.len(), 20);
    let conv = &g.nodes[g.node("conv2d_1").unwrap()];
    assert_eq!(conv.badges[0].dtype, "int8");
    assert_eq!(conv.badges[1].role, Role::Bias);
    assert_eq!(conv.badges[1].dtype, "int32");

    let svg = g.svg();
    assert!(svg.0.starts_with("<svg") && svg.0.ends_with("</svg>"));
    assert_eq!(svg.0.matches("class=\"qplay-node\"").count(), g.nodes.len());
    assert_eq!(svg.0.matches("class=\"qplay-edge\"").count(), g.edges.len());
    assert!(svg
        .0
        .contains("<title>conv2d_1 (Conv)\nwrites activation_1: int8 scale"));
    keep("graph_plain", &svg);

    // uint8: the pills say so.
    let u = graph(&workbench("resnet8_uint8").unwrap()).unwrap();
    assert!(u.edges.iter().any(|e| e.dtype.as_deref() == Some("uint8")));
}

#[test]
fn overlays_carry_the_numbers() {
    let data = dataset(Bundled::Lossless249);
    let idx: Vec<usize> = (0..20).collect();
    let float = workbench("resnet8_float").unwrap();
    let m = workbench("resnet8_int8").unwrap();
    let v = m
        .with_scale(
            "activation_3",
            4.0 * m.param("activation_3").unwrap().scales[0],
        )
        .unwrap();
    let g = graph(&v).unwrap();

    // SQNR: the overlay holds the table's numbers, tensor for tensor, and colours every
    // activation's edge and its producer.
    let errors = layer_errors(&float, &v, &data, &idx).unwrap();
    let x = g.with(Overlay::xmodel_err(&errors));
    let q = g.with(Overlay::qdq_err(&errors));
    assert_eq!(x.layout, g.layout, "recolouring keeps the layout");
    assert_eq!(errors.rows.len(), 16);
    for r in &errors.rows {
        assert_eq!(x.overlay.value(&r.tensor), r.xmodel_err, "{}", r.tensor);
        assert_eq!(q.overlay.value(&r.tensor), Some(r.qdq_err), "{}", r.tensor);
        assert!(g.edges.iter().any(|e| e.tensor == r.tensor), "{}", r.tensor);
    }
    let svg = x.svg();
    let node = g.node("conv2d_3").unwrap();
    assert_eq!(g.output_tensor(node), Some("activation_3"));
    let want = format!(
        "xmodel_err: {:.2} dB",
        errors
            .rows
            .iter()
            .find(|r| r.tensor == "activation_3")
            .unwrap()
            .xmodel_err
            .unwrap()
    );
    assert!(svg.0.contains(&want), "{want}");
    assert!(svg.0.contains("linearGradient") && svg.0.contains("higher is better"));
    keep("graph_xmodel_err", &svg);
    keep("graph_qdq_err", &q.svg());

    // Scale change: ×4 where it was edited, ×1 elsewhere; the edited edge is the reddest.
    let s = g.with(Overlay::scale_change(&v));
    assert!((s.overlay.value("activation_3").unwrap() - 4.0).abs() < 1e-6);
    assert_eq!(s.overlay.value("activation_2"), Some(1.0));
    assert_eq!(s.overlay.value("conv2d_1.weight"), Some(1.0));
    assert_eq!(s.overlay.colour(4.0), "#b2182b");
    assert_eq!(s.overlay.colour(1.0), "#f7f7f7");
    // Two graphs inline in one page: each legend's gradient has its own id.
    assert!(s.svg().0.contains("url(#qplay-scale-2166ac"));
    assert!(x.svg().0.contains("url(#qplay-scale-ffffcc"));
    keep("graph_scale_change", &s.svg());
    // Kept in float: remarked, and its edge loses the pill.
    let kf = v.keep_float("activation_3").unwrap();
    let kg = graph(&kf).unwrap().with(Overlay::scale_change(&kf));
    assert_eq!(kg.overlay.value("activation_3"), None);
    assert_eq!(kg.overlay.remarks["activation_3"], "kept in float");
    let e = kg
        .edges
        .iter()
        .find(|e| e.tensor == "activation_3")
        .unwrap();
    assert_eq!(e.dtype, None);

    // Saturation: the grid 4× coarser clips nothing above; the original's is counted as
    // activations are captured; a grid starting at 0 does not count the ReLU's zeros.
    let sat_v = Overlay::saturation(&v, &data, &idx).unwrap();
    let sat_m = Overlay::saturation(&m, &data, &idx).unwrap();
    assert_eq!(sat_v.figure, Figure::Saturation);
    assert_eq!(sat_v.values.len(), 16);
    assert!(sat_v.value("activation_3").unwrap() <= sat_m.value("activation_3").unwrap());
    assert!(sat_m.values.values().all(|&p| (0.0..=100.0).contains(&p)));
    assert!(sat_m.remarks["activation_3"].contains("folded ReLU"));
    keep("graph_saturation", &graph(&m).unwrap().with(sat_m).svg());

    // Sensitivity: each weight's accuracy drop stored as int4 alone, on its W badge.
    let test = dataset(Bundled::Test);
    let s = sensitivity(&m, &test, 2, Knob::Type(QDtype::Int4), false).unwrap();
    let so = Overlay::sensitivity(&s);
    assert_eq!(so.figure, Figure::SensitivityDrop);
    assert_eq!(so.values.len(), 10);
    for r in &s.rows {
        assert_eq!(so.value(&r.tensor), Some(r.drop_pp), "{}", r.tensor);
        assert!(so.remarks[&r.tensor].starts_with("int4: "));
    }
    let sg = graph(&m).unwrap().with(so.clone());
    let worst = &s.rows[0];
    let badge = format!("data-tensor=\"{}\" data-tip=", worst.tensor);
    let svg = sg.svg().0;
    let at = svg.find(&badge).expect("the weight's badge");
    assert!(svg[at..].contains(&so.colour(worst.drop_pp)));
    keep("graph_sensitivity", &sg.svg());

    // Names of overlays; TorchScript refused by name.
    assert_eq!(Figure::parse("xmodel_err").unwrap(), Figure::XmodelErr);
    let err = Figure::parse("sqnr").unwrap_err().to_string();
    assert!(
        err.contains("none, xmodel_err, qdq_err, scale change, saturation, sensitivity"),
        "{err}"
    );
}

/// The TorchScript model's graph: a box per submodule call and per op of the root graph,
/// quantize/dequantize folded into the edges with PyTorch's dtype, and every activation of the
/// parameter table on the edges out of one box.
#[test]
fn resnet8_torch_layout() {
    let m = workbench("resnet8_int8_torch").unwrap();
    let g = graph(&m).unwrap();
    println!("{}", g.mime_bundle()["text/plain"].as_str().unwrap());
    let onnx = graph(&workbench("resnet8_int8").unwrap()).unwrap();
    let ops = |g: &qplay::quant::Graph, pick: &dyn Fn(&str) -> bool| {
        g.nodes
            .iter()
            .filter(|n| n.kind == NodeKind::Op && pick(&n.op))
            .count()
    };
    let all = |_: &str| true;
    // The ONNX graph's 17 operators, and the two ZeroPad2d modules PyTorch pads the stride-2
    // convolutions with (ONNX keeps the padding inside the Conv).
    assert_eq!(ops(&onnx, &all), 17);
    assert_eq!(ops(&g, &all), 19);
    assert_eq!(ops(&g, &|op| op == "ZeroPad2d"), 2);
    assert_eq!(ops(&onnx, &|op| op == "Conv"), 9);
    assert_eq!(ops(&g, &|op| op.starts_with("Conv")), 9);
    assert_eq!(ops(&onnx, &|op| op == "Add"), 3);
    assert_eq!(ops(&g, &|op| op == "add_relu"), 3);
    for op in ["permute", "AvgPool2d", "flatten", "Linear", "Softmax"] {
        assert_eq!(ops(&g, &|o| o == op), 1, "{op}");
    }
    assert!(g
        .nodes
        .iter()
        .all(|n| !n.op.contains("quantize") && !n.op.contains("dequantize")));
    assert_eq!(g.nodes.first().unwrap().kind, NodeKind::Input);
    assert_eq!(g.nodes.last().unwrap().kind, NodeKind::Output);
    for (e, edge) in g.edges.iter().enumerate() {
        assert!(g.layout.layer[edge.from] < g.layout.layer[edge.to]);
        let r = &g.layout.routes[e];
        assert!(r.windows(2).all(|w| w[1].1 > w[0].1), "{}", edge.tensor);
    }
    // Every packed weight is a W badge (qint8) on its module, followed by its float bias.
    let params = m.quant_params().rows;
    let weights: BTreeSet<(String, String)> = params
        .iter()
        .filter(|p| p.role == Role::Weight)
        .map(|p| (p.consumers[0].clone(), p.tensor.clone()))
        .collect();
    let w_badges: BTreeSet<(String, String)> = g
        .nodes
        .iter()
        .flat_map(|n| {
            n.badges
                .iter()
                .filter(|b| b.role == Role::Weight)
                .map(move |b| (n.name.clone(), b.tensor.clone()))
        })
        .collect();
    assert_eq!(w_badges, weights);
    assert_eq!(
        w_badges.len(),
        10,
        "9 packed convolutions and the dense layer"
    );
    let conv = &g.nodes[g.node("conv2d_3").unwrap()];
    assert_eq!(conv.op, "ConvReLU2d");
    assert_eq!(conv.badges[0].dtype, "qint8");
    assert_eq!(
        (
            conv.badges[1].tensor.as_str(),
            conv.badges[1].role,
            conv.badges[1].dtype.as_str()
        ),
        ("conv2d_3.bias", Role::Bias, "float")
    );
    // Every activation of the parameter table is on the edges of one box: the box that rounds
    // to its grid (ops that only move values, such as the pool, pass the grid on), with
    // PyTorch's dtype; every quantized edge carries a parameter of the table.
    for p in params.iter().filter(|p| p.role == Role::Activation) {
        let carrying: Vec<_> = g.edges.iter().filter(|e| e.tensor == p.tensor).collect();
        assert!(!carrying.is_empty(), "no edge carries `{}`", p.tensor);
        let origins: BTreeSet<usize> = carrying
            .iter()
            .map(|e| e.from)
            .filter(|&from| !g.edges.iter().any(|e| e.to == from && e.tensor == p.tensor))
            .collect();
        assert_eq!(origins.len(), 1, "`{}` starts at {origins:?}", p.tensor);
        assert!(carrying
            .iter()
            .all(|e| e.dtype.as_deref() == Some("quint8")));
    }
    for e in g.edges.iter().filter(|e| e.dtype.is_some()) {
        assert!(g.param(&e.tensor).is_some(), "{}", e.tensor);
    }
    // Named where they are rounded: the input by the quantize op before the permute, the
    // padded tensors by the quantize ops after the pads, the adds by their own operands.
    let from = |t: &str| &g.nodes[g.edges.iter().find(|e| e.tensor == t).unwrap().from].name;
    assert_eq!(from("input"), "x");
    assert_eq!(from("conv2d_3_pad"), "conv2d_3_pad");
    assert_eq!(from("add_relu_1"), "add_relu_1");
    assert_eq!(from("conv2d_7"), "conv2d_7");
    assert_eq!(
        float_edges(&g),
        ["dense_softmax"],
        "only the softmax runs in float"
    );

    let svg = g.svg();
    assert_eq!(svg.0.matches("class=\"qplay-node\"").count(), g.nodes.len());
    assert_eq!(svg.0.matches("class=\"qplay-edge\"").count(), g.edges.len());
    assert!(svg.0.contains(">quint8</text>"));
    keep("graph_torch_plain", &svg);

    // Overlays: the scale change colours the edited activation's edges (through the pool and
    // the flatten, which keep its grid); a sensitivity sweep colours the W badges; SQNR and
    // saturation are there, uncoloured, with the reason.
    let v = m
        .with_scale("add_relu_2", 4.0 * m.param("add_relu_2").unwrap().scales[0])
        .unwrap();
    let s = graph(&v).unwrap().with(Overlay::scale_change(&v));
    assert_eq!(s.layout, g.layout, "an edit moves numbers, not boxes");
    assert!((s.overlay.value("add_relu_2").unwrap() - 4.0).abs() < 1e-6);
    assert_eq!(s.overlay.value("conv2d_7"), Some(1.0));
    assert_eq!(s.overlay.value("conv2d_7.weight"), Some(1.0));
    let pool = s.node("average_pooling2d").unwrap();
    assert_eq!(s.output_tensor(pool), Some("add_relu_2"));
    let red = s.overlay.colour(4.0);
    let svg = s.svg().0;
    assert_eq!(
        svg.matches(&format!("stroke=\"{red}\"")).count(),
        3,
        "add_relu_2 → pool → flatten → dense"
    );
    assert!(svg.contains("add_relu_2: uint8 scale"));
    keep("graph_torch_scale_change", &s.svg());
    let test = dataset(Bundled::Test);
    let sens = sensitivity(&m, &test, 2, Knob::Bits(4), false).unwrap();
    let so = g.with(Overlay::sensitivity(&sens));
    assert_eq!(so.overlay.values.len(), 10);
    let worst = &sens.rows[0];
    let svg = so.svg().0;
    let at = svg
        .find(&format!("data-tensor=\"{}\" data-tip=", worst.tensor))
        .expect("the weight's badge");
    assert!(svg[at..].contains(&so.overlay.colour(worst.drop_pp)));
    let idx: Vec<usize> = (0..10).collect();
    let sat = Overlay::saturation(&m, &test, &idx).unwrap();
    assert!(sat.values.is_empty());
    assert!(sat.unavailable.as_deref().unwrap().contains("TorchScript"));
    let missing = Overlay::unavailable_for(&m);
    let figures: Vec<Figure> = missing.iter().map(|o| o.figure).collect();
    assert_eq!(
        figures,
        [Figure::XmodelErr, Figure::QdqErr, Figure::Saturation]
    );
    let x = g.with(missing[0].clone());
    assert!(x.svg().0.contains("inside its fused kernels"));
    assert!(!x.svg().0.contains("linearGradient"));
    keep("graph_torch_xmodel_unavailable", &x.svg());
    assert!(Overlay::unavailable_for(&workbench("resnet8_int8").unwrap()).is_empty());
}

#[test]
fn ten_times_larger_graph() {
    let m = workbench("resnet8_int8").unwrap();
    let big = qplay::quant::graph::chained(m.proto().unwrap(), 10);
    let params = qplay::quant::onnx_graph::quant_params(&big).unwrap();
    let g = qplay::quant::graph::graph_of("chain", &big, &params).unwrap();
    let ops = g.nodes.iter().filter(|n| n.kind == NodeKind::Op).count();
    assert_eq!(ops, 170);
    let names: BTreeSet<&str> = g.nodes.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names.len(), g.nodes.len(), "every node placed once");
    assert_eq!(g.edges.iter().filter(|e| e.dtype.is_some()).count(), 190);
    for (e, edge) in g.edges.iter().enumerate() {
        assert!(g.layout.layer[edge.from] < g.layout.layer[edge.to]);
        assert!(g.layout.routes[e].windows(2).all(|w| w[1].1 > w[0].1));
    }
    let mut by_layer: Vec<Vec<f64>> = vec![Vec::new(); g.layout.layers()];
    for (i, &(x, _)) in g.layout.pos.iter().enumerate() {
        by_layer[g.layout.layer[i]].push(x);
    }
    for xs in &mut by_layer {
        xs.sort_by(f64::total_cmp);
        assert!(
            xs.windows(2).all(|w| w[1] - w[0] >= 150.0),
            "boxes overlap: {xs:?}"
        );
    }
    let svg = g.with(Overlay::scale_change(&m)).svg();
    assert_eq!(svg.0.matches("class=\"qplay-node\"").count(), g.nodes.len());
    keep("graph_chain10", &svg);
}
