//! Which layers a net instance keeps: Caffe's `Net::FilterNet` and `StateMeetsRule`.
//!
//! A layer without `include` rules is kept unless one of its `exclude` rules matches; a
//! layer with `include` rules is kept only when one of them matches. A rule matches when
//! every condition it sets holds: the phase, `min_level ≤ level ≤ max_level`, every
//! `stage` present in the state and no `not_stage` present. A deploy net is a TEST net.

use super::error::NetError;
use crate::ir::Phase;
use crate::proto::caffe::{LayerParameter, NetParameter, NetStateRule, Phase as ProtoPhase};

/// The state a net is instantiated in (Caffe `NetState`): phase, level and stages.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NetStateFilter {
    /// TRAIN or TEST (deploy).
    pub phase: Phase,
    /// Level, 0 by default.
    pub level: i32,
    /// Active stages.
    pub stages: Vec<String>,
}

impl From<Phase> for NetStateFilter {
    fn from(phase: Phase) -> Self {
        Self {
            phase,
            ..Default::default()
        }
    }
}

/// The IR phase of a protobuf phase number (unknown numbers read as TEST, Caffe's default).
pub fn phase_from_proto(p: i32) -> Phase {
    if p == ProtoPhase::Train as i32 {
        Phase::Train
    } else {
        Phase::Test
    }
}

/// The protobuf phase number of an IR phase.
pub fn phase_to_proto(p: Phase) -> i32 {
    match p {
        Phase::Train => ProtoPhase::Train as i32,
        Phase::Test => ProtoPhase::Test as i32,
    }
}

/// `StateMeetsRule`: does the state satisfy every condition the rule sets?
pub fn state_meets_rule(state: &NetStateFilter, rule: &NetStateRule) -> bool {
    if rule
        .phase
        .is_some_and(|p| phase_from_proto(p) != state.phase)
    {
        return false;
    }
    if rule.min_level.is_some_and(|m| state.level < m) {
        return false;
    }
    if rule.max_level.is_some_and(|m| state.level > m) {
        return false;
    }
    rule.stage.iter().all(|s| state.stages.contains(s))
        && !rule.not_stage.iter().any(|s| state.stages.contains(s))
}

/// Whether a layer belongs to a net instantiated in `state`.
pub fn layer_included(layer: &LayerParameter, state: &NetStateFilter) -> Result<bool, NetError> {
    if !layer.include.is_empty() && !layer.exclude.is_empty() {
        return Err(NetError::IncludeAndExclude {
            layer: layer.name().into(),
        });
    }
    if layer.include.is_empty() {
        Ok(!layer.exclude.iter().any(|r| state_meets_rule(state, r)))
    } else {
        Ok(layer.include.iter().any(|r| state_meets_rule(state, r)))
    }
}

/// The phase a layer is restricted to by its rules, when the rules say nothing but a phase
/// (`include { phase: TRAIN }` → TRAIN, `exclude { phase: TRAIN }` → TEST). Kept on the IR
/// layer so that a train/test net can be written back with its rules.
pub fn layer_phase(layer: &LayerParameter) -> Option<Phase> {
    let phase_only = |r: &NetStateRule| {
        r.min_level.is_none()
            && r.max_level.is_none()
            && r.stage.is_empty()
            && r.not_stage.is_empty()
    };
    match (layer.include.as_slice(), layer.exclude.as_slice()) {
        ([rule], []) if phase_only(rule) => rule.phase.map(phase_from_proto),
        ([], [rule]) if phase_only(rule) => rule.phase.map(|p| match phase_from_proto(p) {
            Phase::Train => Phase::Test,
            Phase::Test => Phase::Train,
        }),
        _ => None,
    }
}

/// `FilterNet`: a copy of the (upgraded) net with only the layers of `state`.
pub fn filter_net(net: &NetParameter, state: &NetStateFilter) -> Result<NetParameter, NetError> {
    let mut out = net.clone();
    out.layer.clear();
    for l in &net.layer {
        if layer_included(l, state)? {
            out.layer.push(l.clone());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(phase: Option<Phase>) -> NetStateRule {
        NetStateRule {
            phase: phase.map(phase_to_proto),
            ..Default::default()
        }
    }

    fn layer(include: Vec<NetStateRule>, exclude: Vec<NetStateRule>) -> LayerParameter {
        LayerParameter {
            name: Some("l".into()),
            include,
            exclude,
            ..Default::default()
        }
    }

    #[test]
    fn include_and_exclude_follow_caffe_filter_net() {
        let train = NetStateFilter::from(Phase::Train);
        let test = NetStateFilter::from(Phase::Test);
        let inc_train = layer(vec![rule(Some(Phase::Train))], vec![]);
        assert!(layer_included(&inc_train, &train).unwrap());
        assert!(!layer_included(&inc_train, &test).unwrap());
        let exc_train = layer(vec![], vec![rule(Some(Phase::Train))]);
        assert!(!layer_included(&exc_train, &train).unwrap());
        assert!(layer_included(&exc_train, &test).unwrap());
        // Two include rules: either one suffices.
        let both = layer(
            vec![rule(Some(Phase::Train)), rule(Some(Phase::Test))],
            vec![],
        );
        assert!(layer_included(&both, &test).unwrap());
        let bad = layer(vec![rule(None)], vec![rule(None)]);
        let e = layer_included(&bad, &test).unwrap_err().to_string();
        assert!(e.contains("'l'") && e.contains("not both"), "{e}");
        assert_eq!(layer_phase(&exc_train), Some(Phase::Test));
    }

    #[test]
    fn levels_and_stages_must_all_hold() {
        let mut state = NetStateFilter {
            phase: Phase::Test,
            level: 2,
            stages: vec!["deploy".into()],
        };
        let r = NetStateRule {
            min_level: Some(1),
            max_level: Some(2),
            stage: vec!["deploy".into()],
            ..Default::default()
        };
        assert!(state_meets_rule(&state, &r));
        state.level = 3;
        assert!(!state_meets_rule(&state, &r));
        state.level = 2;
        let not = NetStateRule {
            not_stage: vec!["deploy".into()],
            ..Default::default()
        };
        assert!(!state_meets_rule(&state, &not));
        state.stages.clear();
        assert!(!state_meets_rule(&state, &r));
        assert!(state_meets_rule(&state, &not));
    }
}
