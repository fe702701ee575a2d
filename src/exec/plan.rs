//! Execution plan: which layers run, which run in place on a dying bottom, which ReLUs fold
//! into the layer before them, and after which step each blob's memory can be reused.

use crate::ir::{Net, Op};
use crate::ops::dispatch::{can_fuse_relu, supports_in_place};
use std::collections::HashMap;

/// What a step does with its layer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Action {
    /// Computes the tops into fresh (recycled) memory; `fused_relu` applies a ReLU with
    /// that slope in the same pass.
    Run { fused_relu: Option<f32> },
    /// Overwrites its only bottom, which nobody reads afterwards, and renames it.
    InPlace,
    /// A ReLU already applied by the layer at `into` (a plan step index): only renames.
    FusedAway { into: usize },
}

/// One layer of the plan.
#[derive(Debug, Clone)]
pub(crate) struct Step {
    /// Index into `Net::layers`.
    pub layer: usize,
    /// Slots of the bottoms.
    pub bottoms: Vec<usize>,
    /// Slots of the tops.
    pub tops: Vec<usize>,
    /// How it runs.
    pub action: Action,
    /// Slots whose last reader is this step; their memory is recycled after it.
    pub release: Vec<usize>,
}

/// The steps in execution order.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub steps: Vec<Step>,
}

/// True for layers whose tops the caller feeds.
pub(crate) fn is_source(op: &Op) -> bool {
    matches!(op, Op::Input { .. } | Op::Data(_))
}

/// Builds the plan. `slot` maps every IR blob name to its slot; `keep` marks slots that
/// must survive the run (outputs, or everything with `keep_all_blobs`). Fusion and
/// in-place execution only touch blobs that are not kept.
pub(crate) fn build(
    net: &Net,
    slot: &HashMap<String, usize>,
    keep: &[bool],
    fuse_relu: bool,
) -> Plan {
    let runnable: Vec<usize> = (0..net.layers.len())
        .filter(|&i| !is_source(&net.layers[i].op))
        .collect();
    let slots_of = |names: &[String]| -> Vec<usize> { names.iter().map(|n| slot[n]).collect() };
    let mut readers = vec![0usize; keep.len()];
    let mut last_use = vec![usize::MAX; keep.len()];
    for (step, &li) in runnable.iter().enumerate() {
        for b in slots_of(&net.layers[li].bottoms) {
            readers[b] += 1;
            last_use[b] = step;
        }
    }

    let mut steps: Vec<Step> = Vec::with_capacity(runnable.len());
    // Slot → step that produced it with a fusable op, for ReLU fusion.
    let mut producer: HashMap<usize, usize> = HashMap::new();
    for (step, &li) in runnable.iter().enumerate() {
        let layer = &net.layers[li];
        let bottoms = slots_of(&layer.bottoms);
        let tops = slots_of(&layer.tops);
        let single = bottoms.len() == 1 && tops.len() == 1;
        let dying = single && !keep[bottoms[0]] && last_use[bottoms[0]] == step;
        let mut action = Action::Run { fused_relu: None };
        if let (Op::Relu(p), true) = (&layer.op, dying && fuse_relu) {
            if readers[bottoms[0]] == 1 {
                if let Some(&into) = producer.get(&bottoms[0]) {
                    steps[into].action = Action::Run {
                        fused_relu: Some(p.negative_slope),
                    };
                    action = Action::FusedAway { into };
                }
            }
        }
        if action == (Action::Run { fused_relu: None }) && dying && supports_in_place(&layer.op) {
            action = Action::InPlace;
        }
        if can_fuse_relu(&layer.op) && tops.len() == 1 {
            producer.insert(tops[0], step);
        }
        let mut release: Vec<usize> = bottoms
            .iter()
            .copied()
            .filter(|&b| !keep[b] && last_use[b] == step)
            .collect();
        release.sort_unstable();
        release.dedup();
        if !matches!(action, Action::Run { .. }) {
            // The bottom's memory moved into the top; nothing to recycle.
            release.clear();
        }
        steps.push(Step {
            layer: li,
            bottoms,
            tops,
            action,
            release,
        });
    }
    Plan { steps }
}
