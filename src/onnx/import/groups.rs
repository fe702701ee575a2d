//! Folding the exporter's helper-node groups back into single Caffe layers.
//!
//! A group is a run of nodes named `<layer>/<role>` followed by the node named `<layer>`.
//! Each recognizer checks the exact wiring and constants the exporter writes (see
//! [`crate::onnx::export`]); anything else returns `false` and the nodes are translated one
//! by one, so a look-alike group in another tool's file is never mis-read.

use super::super::attr::{get_int, get_ints, get_string};
use super::super::pb::NodeProto;
use super::super::pool_map::{divisor_correction, preferred_rounding, AxisPlan};
use super::super::OnnxResult;
use super::nodes::{broadcast_axes, gemm, matmul};
use super::{layer, Ctx};
use crate::ir::{Layer, Op, Tensor};
use crate::ops::batchnorm::ScaleParams;
use crate::ops::eltwise::{EltwiseOp, EltwiseParams};
use crate::ops::lrn::{LrnParams, NormRegion};
use crate::ops::pool::{PoolMethod, PoolParams};
use std::collections::HashMap;

struct Group<'a> {
    by_role: HashMap<&'a str, &'a NodeProto>,
    by_output: HashMap<&'a str, (&'a str, &'a NodeProto)>,
    main: &'a NodeProto,
}

impl<'a> Group<'a> {
    fn role(&self, r: &str, op: &str) -> Option<&'a NodeProto> {
        self.by_role.get(r).copied().filter(|n| n.op_type == op)
    }

    fn roles(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.by_role.keys().copied().collect();
        v.sort_unstable();
        v
    }

    fn has_roles(&self, want: &[&str]) -> bool {
        let mut w = want.to_vec();
        w.sort_unstable();
        self.roles() == w
    }
}

fn input(n: &NodeProto, i: usize) -> &str {
    n.input.get(i).map(String::as_str).unwrap_or("")
}

fn output(n: &NodeProto) -> &str {
    n.output.first().map(String::as_str).unwrap_or("")
}

/// Tries to fold `helpers` + `main` into one layer; `Ok(false)` when they are not an
/// exporter group.
pub(crate) fn fold(ctx: &mut Ctx, helpers: &[NodeProto], main: &NodeProto) -> OnnxResult<bool> {
    let mut g = Group {
        by_role: HashMap::new(),
        by_output: HashMap::new(),
        main,
    };
    for h in helpers {
        let role = h.name.rsplit_once('/').map(|(_, r)| r).unwrap_or("");
        if h.output.len() != 1 || !ctx.single_use(output(h)) || g.by_role.insert(role, h).is_some()
        {
            return Ok(false);
        }
        g.by_output.insert(output(h), (role, h));
    }
    if main.output.len() != 1 {
        return Ok(false);
    }
    let name = ctx.layer_name(main);
    let out = output(main).to_string();
    let built = match main.op_type.as_str() {
        "Gemm" => fold_flatten_gemm(ctx, &g, &name, &out)?,
        "MatMul" | "Add"
            if g.by_role.contains_key("matmul") || g.by_role.contains_key("reshape") =>
        {
            fold_matmul(ctx, &g, &name, &out)?
        }
        "Mul" if g.has_roles(&["pad", "pool"]) => fold_ave_pool(ctx, &g, &name, &out)?,
        "Mul" if g.has_roles(&["square", "pool", "scale", "shift", "pow"]) => {
            fold_lrn_within(ctx, &g, &name, &out)?
        }
        "Add" | "Mul"
            if g.by_role.contains_key("gamma")
                || g.has_roles(&["mul"]) && ctx.konst(main, 1).is_some() =>
        {
            fold_scale(ctx, &g, &name, &out)?
        }
        "Add" | "Mul" => fold_eltwise(ctx, &g, &name, &out)?,
        _ => None,
    };
    match built {
        Some(l) => {
            ctx.push(main, l)?;
            Ok(true)
        }
        None => Ok(false),
    }
}

fn fold_flatten_gemm(ctx: &Ctx, g: &Group, name: &str, out: &str) -> OnnxResult<Option<Layer>> {
    let Some(f) = g.role("flatten", "Flatten") else {
        return Ok(None);
    };
    if !g.has_roles(&["flatten"])
        || get_int(f, "axis")?.unwrap_or(1) != 1
        || input(g.main, 0) != output(f)
    {
        return Ok(None);
    }
    let Some(shape) = ctx.shapes.get(input(f, 0)).cloned() else {
        return Ok(None);
    };
    gemm(ctx, g.main, name, out, input(f, 0).to_string(), &shape).map(Some)
}

/// Reshape(x, x.shape[..a] + [K]) → MatMul(·, W) (→ Add(·, b)): InnerProduct on axis a.
fn fold_matmul(ctx: &Ctx, g: &Group, name: &str, out: &str) -> OnnxResult<Option<Layer>> {
    let (mm, bias) = match g.main.op_type.as_str() {
        "Add" => {
            let Some(mm) = g.role("matmul", "MatMul") else {
                return Ok(None);
            };
            let Some(b) = ctx.konst(g.main, 1) else {
                return Ok(None);
            };
            if input(g.main, 0) != output(mm) {
                return Ok(None);
            }
            (mm, Some(b))
        }
        _ => (g.main, None),
    };
    let expected: &[&str] = match (g.by_role.contains_key("reshape"), bias.is_some()) {
        (true, true) => &["reshape", "matmul"],
        (true, false) => &["reshape"],
        (false, true) => &["matmul"],
        (false, false) => return Ok(None),
    };
    if !g.has_roles(expected) {
        return Ok(None);
    }
    let (x, axis) = match g.role("reshape", "Reshape") {
        Some(r) => {
            let Some(xs) = ctx.shapes.get(input(r, 0)) else {
                return Ok(None);
            };
            let Some(target) = ctx.konst(r, 1).and_then(|c| c.as_i64()) else {
                return Ok(None);
            };
            let a = target.len().saturating_sub(1);
            let k: usize = xs.get(a..).map(|s| s.iter().product()).unwrap_or(0);
            // Leading dims copied (0) or equal; K given or inferred (−1).
            let lead_ok = xs.len() >= a
                && target[..a]
                    .iter()
                    .zip(xs)
                    .all(|(&t, &d)| t == 0 || t == d as i64);
            let k_ok = target.get(a).is_some_and(|&t| t == -1 || t == k as i64);
            if target.is_empty() || !lead_ok || !k_ok || input(mm, 0) != output(r) {
                return Ok(None);
            }
            (input(r, 0).to_string(), a)
        }
        None => {
            let Some(xs) = ctx.shapes.get(input(mm, 0)) else {
                return Ok(None);
            };
            (input(mm, 0).to_string(), xs.len().saturating_sub(1))
        }
    };
    let shape = ctx.shapes[&x].clone();
    matmul(ctx, mm, name, out, x, &shape, axis, bias).map(Some)
}

/// Pad → AveragePool (no pads) → Mul(divisor correction): Caffe AVE pooling whose last
/// windows overhang `H + pad`.
fn fold_ave_pool(ctx: &Ctx, g: &Group, name: &str, out: &str) -> OnnxResult<Option<Layer>> {
    let (Some(pad), Some(pool)) = (g.role("pad", "Pad"), g.role("pool", "AveragePool")) else {
        return Ok(None);
    };
    let mode_ok = get_string(pad, "mode")?.is_none_or(|m| m == "constant");
    let value_ok = pad
        .input
        .get(2)
        .is_none_or(|v| v.is_empty() || ctx.consts.get(v).and_then(|c| c.scalar()) == Some(0.0));
    let Some(pads) = ctx.konst(pad, 1).and_then(|c| c.as_i64()) else {
        return Ok(None);
    };
    let Some(xs) = ctx.shapes.get(input(pad, 0)).cloned() else {
        return Ok(None);
    };
    let no_pool_pads = get_ints(pool, "pads")?.is_none_or(|p| p.iter().all(|&v| v == 0));
    let kernel = get_ints(pool, "kernel_shape")?.unwrap_or_default();
    let strides = get_ints(pool, "strides")?.unwrap_or_else(|| vec![1, 1]);
    if !mode_ok
        || !value_ok
        || !no_pool_pads
        || xs.len() != 4
        || pads.len() != 8
        || pads[0..2].iter().chain(&pads[4..6]).any(|&v| v != 0)
        || kernel.len() != 2
        || strides.len() != 2
        || input(pool, 0) != output(pad)
        || input(g.main, 0) != output(pool)
        || kernel.iter().chain(&strides).chain(pads).any(|&v| v < 0)
    {
        return Ok(None);
    }
    let Some(corr) = ctx.konst(g.main, 1) else {
        return Ok(None);
    };
    let k = [kernel[0] as usize, kernel[1] as usize];
    let s = [strides[0] as usize, strides[1] as usize];
    let (pb, pe) = (
        [pads[2] as usize, pads[3] as usize],
        [pads[6] as usize, pads[7] as usize],
    );
    let ceil_mode = get_int(pool, "ceil_mode")?.unwrap_or(0) == 1;
    for round in preferred_rounding(ceil_mode) {
        let plan = |a: usize| AxisPlan::caffe(xs[2 + a], k[a], s[a], pb[a], round).ok();
        let (Some(h), Some(w)) = (plan(0), plan(1)) else {
            continue;
        };
        let exact = h.exact() && w.exact();
        if [h.pad_end, w.pad_end] != pe
            || corr.dims != [1, 1, h.out, w.out]
            || (ceil_mode && !exact)
        {
            continue;
        }
        let want = divisor_correction(&h, &w);
        let same = want
            .iter()
            .zip(corr.to_f32())
            .all(|(a, b)| (a - b).abs() <= 1e-6 * a.abs());
        if same {
            let p = PoolParams {
                method: PoolMethod::Ave,
                kernel: k,
                stride: s,
                pad: pb,
                global: false,
                round,
            };
            return Ok(Some(layer(
                name.into(),
                Op::Pooling(p),
                vec![input(pad, 0).to_string()],
                out,
                vec![],
            )));
        }
    }
    Ok(None)
}

/// x · (1 + α · AveragePool_n(x·x))^−β: Caffe LRN WITHIN_CHANNEL.
fn fold_lrn_within(ctx: &Ctx, g: &Group, name: &str, out: &str) -> OnnxResult<Option<Layer>> {
    let (Some(sq), Some(pool), Some(scale), Some(shift), Some(pow)) = (
        g.role("square", "Mul"),
        g.role("pool", "AveragePool"),
        g.role("scale", "Mul"),
        g.role("shift", "Add"),
        g.role("pow", "Pow"),
    ) else {
        return Ok(None);
    };
    let x = input(sq, 0);
    let scalar = |n: &NodeProto| ctx.konst(n, 1).and_then(|c| c.scalar());
    let (Some(alpha), Some(one), Some(neg_beta)) = (scalar(scale), scalar(shift), scalar(pow))
    else {
        return Ok(None);
    };
    let kernel = get_ints(pool, "kernel_shape")?.unwrap_or_default();
    let n = kernel.first().copied().unwrap_or(0);
    let p = (n - 1) / 2;
    let wired = input(sq, 1) == x
        && input(pool, 0) == output(sq)
        && input(scale, 0) == output(pool)
        && input(shift, 0) == output(scale)
        && input(pow, 0) == output(shift)
        && input(g.main, 0) == x
        && input(g.main, 1) == output(pow);
    let geometry = n > 0
        && n % 2 == 1
        && kernel == [n, n]
        && get_ints(pool, "strides")?.is_none_or(|s| s == [1, 1])
        && get_ints(pool, "pads")?.unwrap_or_default() == [p, p, p, p]
        && get_int(pool, "count_include_pad")? == Some(1)
        && get_int(pool, "ceil_mode")?.unwrap_or(0) == 0;
    if !wired || !geometry || one != 1.0 {
        return Ok(None);
    }
    let l = LrnParams {
        local_size: n as usize,
        alpha,
        beta: -neg_beta,
        k: 1.0,
        region: NormRegion::WithinChannel,
    };
    Ok(Some(layer(
        name.into(),
        Op::Lrn(l),
        vec![x.to_string()],
        out,
        vec![],
    )))
}

/// Mul(x, γ) (+ Add β), with γ an initializer or a reshaped second bottom: Caffe Scale.
fn fold_scale(ctx: &Ctx, g: &Group, name: &str, out: &str) -> OnnxResult<Option<Layer>> {
    let with_bias = g.main.op_type == "Add";
    let mul = if with_bias {
        match g.role("mul", "Mul") {
            Some(m) if input(g.main, 0) == output(m) => m,
            _ => return Ok(None),
        }
    } else {
        g.main
    };
    let beta = if with_bias {
        match ctx.konst(g.main, 1) {
            Some(b) => Some(b),
            None => return Ok(None),
        }
    } else {
        None
    };
    let x = input(mul, 0).to_string();
    let Some(xs) = ctx.shapes.get(&x).cloned() else {
        return Ok(None);
    };
    match g.role("gamma", "Reshape") {
        Some(r) => {
            // Two-bottom Scale: γ = bottom 1 reshaped to γ.shape + ones.
            let expected: &[&str] = if with_bias {
                &["gamma", "mul"]
            } else {
                &["gamma"]
            };
            let Some(gs) = ctx.shapes.get(input(r, 0)).cloned() else {
                return Ok(None);
            };
            let Some(target) = ctx.konst(r, 1).and_then(|c| c.as_i64()) else {
                return Ok(None);
            };
            let axis = xs.len().checked_sub(target.len());
            let dims_ok = target.len() >= gs.len()
                && target[..gs.len()]
                    .iter()
                    .zip(&gs)
                    .all(|(&t, &d)| t == d as i64)
                && target[gs.len()..].iter().all(|&t| t == 1);
            if !g.has_roles(expected) || axis.is_none() || !dims_ok || input(mul, 1) != output(r) {
                return Ok(None);
            }
            let mut blobs = Vec::new();
            if let Some(b) = beta {
                if b.len() != gs.iter().product::<usize>() {
                    return Ok(None);
                }
                blobs.push(Tensor::from_vec(&gs, b.to_f32()).unwrap_or_default());
            }
            let p = ScaleParams {
                axis: axis.unwrap_or(0) as i32,
                num_axes: gs.len() as i32,
                bias_term: with_bias,
                ..Default::default()
            };
            Ok(Some(layer(
                name.into(),
                Op::Scale(p),
                vec![x, input(r, 0).to_string()],
                out,
                blobs,
            )))
        }
        None => {
            if !with_bias || !g.has_roles(&["mul"]) {
                return Ok(None);
            }
            let Some(gamma) = ctx.konst(mul, 1) else {
                return Ok(None);
            };
            let (axis, n, gt) = broadcast_axes(mul, &xs, gamma)?;
            let (baxis, bn, bt) = broadcast_axes(g.main, &xs, beta.unwrap_or(gamma))?;
            if (axis, n) != (baxis, bn) || gt.shape != bt.shape {
                return Ok(None);
            }
            let p = ScaleParams {
                axis: axis as i32,
                num_axes: n as i32,
                bias_term: true,
                ..Default::default()
            };
            Ok(Some(layer(
                name.into(),
                Op::Scale(p),
                vec![x],
                out,
                vec![gt, bt],
            )))
        }
    }
}

/// Add/Mul chains (with Mul-by-coefficient terms): one Caffe Eltwise SUM or PROD.
fn fold_eltwise(ctx: &Ctx, g: &Group, name: &str, out: &str) -> OnnxResult<Option<Layer>> {
    let prod = g.main.op_type == "Mul";
    let mut used = 0;
    let mut terms: Vec<(String, f32)> = Vec::new();
    let mut stack = vec![input(g.main, 1), input(g.main, 0)];
    while let Some(t) = stack.pop() {
        match g.by_output.get(t) {
            Some((role, n))
                if role.starts_with(if prod { "prod" } else { "sum" })
                    && n.op_type == g.main.op_type =>
            {
                used += 1;
                stack.push(input(n, 1));
                stack.push(input(n, 0));
            }
            Some((role, n)) if !prod && role.starts_with("mul") && n.op_type == "Mul" => {
                let Some(c) = ctx.konst(n, 1).and_then(|c| c.scalar()) else {
                    return Ok(None);
                };
                if !ctx.shapes.contains_key(input(n, 0)) {
                    return Ok(None);
                }
                used += 1;
                terms.push((input(n, 0).to_string(), c));
            }
            Some(_) => return Ok(None),
            None => {
                if !ctx.shapes.contains_key(t) {
                    return Ok(None);
                }
                terms.push((t.to_string(), 1.0));
            }
        }
    }
    if used != g.by_role.len() || terms.len() < 2 {
        return Ok(None);
    }
    let first = &ctx.shapes[&terms[0].0];
    if terms.iter().any(|(t, _)| &ctx.shapes[t] != first) {
        return Ok(None);
    }
    let coeffs = if terms.iter().all(|(_, c)| *c == 1.0) {
        vec![]
    } else {
        terms.iter().map(|(_, c)| *c).collect()
    };
    let op = if prod {
        EltwiseOp::Prod
    } else {
        EltwiseOp::Sum
    };
    Ok(Some(layer(
        name.into(),
        Op::Eltwise(EltwiseParams { op, coeffs }),
        terms.into_iter().map(|(t, _)| t).collect(),
        out,
        vec![],
    )))
}
