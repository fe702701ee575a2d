//! `SolverConfig`: a `SolverParameter` (solver.prototxt) checked and resolved with Caffe's
//! defaults and rules (`Solver::Init`, `InitTrainNet`, `InitTestNets`, `UpgradeSolverType`),
//! so that a Caffe user's solver file behaves the same here.

use super::lr_policy::LrPolicy;
use crate::proto::caffe::{solver_parameter::SolverType, NetParameter, SolverParameter};

/// A solver file that Caffe would refuse (it would abort with a CHECK); the message names
/// the field.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("solver field '{field}': {msg}")]
pub struct ConfigError {
    /// The SolverParameter field at fault.
    pub field: &'static str,
    /// What is wrong with it.
    pub msg: String,
}

fn invalid(field: &'static str, msg: impl Into<String>) -> ConfigError {
    ConfigError {
        field,
        msg: msg.into(),
    }
}

/// The update rule (`type`, or the legacy `solver_type` enum).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// Momentum SGD: `V ← μV + lr·∇`, `W ← W − V`.
    Sgd,
    /// Nesterov's accelerated gradient, as Caffe's `NesterovSolver`.
    Nesterov,
    /// AdaGrad (`momentum` must be 0).
    AdaGrad,
    /// RMSProp with `rms_decay` (`momentum` must be 0).
    RmsProp,
    /// AdaDelta with `momentum` as the decay.
    AdaDelta,
    /// Adam with β₁ = `momentum`, β₂ = `momentum2`, ε = `delta`.
    Adam,
}

impl Method {
    /// Caffe's `type` string.
    pub fn name(self) -> &'static str {
        match self {
            Method::Sgd => "SGD",
            Method::Nesterov => "Nesterov",
            Method::AdaGrad => "AdaGrad",
            Method::RmsProp => "RMSProp",
            Method::AdaDelta => "AdaDelta",
            Method::Adam => "Adam",
        }
    }

    /// History blobs per learnable parameter: AdaDelta and Adam keep two (Caffe appends the
    /// second set after the first, and the solverstate stores both).
    pub fn histories_per_param(self) -> usize {
        match self {
            Method::AdaDelta | Method::Adam => 2,
            _ => 1,
        }
    }
}

/// Weight-decay flavour (`regularization_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Regularization {
    /// `∇ += λ·W`.
    L2,
    /// `∇ += λ·sign(W)`.
    L1,
}

/// Where a net definition comes from: a prototxt path (relative to the working directory,
/// as with `caffe train`) or a message inlined in the solver file.
#[derive(Debug, Clone, PartialEq)]
pub enum NetSource {
    /// `net:`, `train_net:` or `test_net:` path.
    File(String),
    /// `net_param`, `train_net_param` or `test_net_param`.
    Inline(Box<NetParameter>),
}

/// One test net with the number of batches a test pass runs (`test_iter`).
#[derive(Debug, Clone, PartialEq)]
pub struct TestNet {
    /// Its definition (instantiated in the TEST phase).
    pub source: NetSource,
    /// Batches per test pass.
    pub iters: usize,
}

/// Every SolverParameter field the trainer uses, with Caffe's defaults applied.
#[derive(Debug, Clone, PartialEq)]
pub struct SolverConfig {
    /// The update rule.
    pub method: Method,
    /// `base_lr`.
    pub base_lr: f32,
    /// `lr_policy` with its parameters.
    pub lr_policy: LrPolicy,
    /// `momentum` (μ; β₁ for Adam; the decay for AdaDelta).
    pub momentum: f32,
    /// `momentum2` (β₂ for Adam, default 0.999).
    pub momentum2: f32,
    /// `delta` (ε for AdaGrad, RMSProp, AdaDelta and Adam; default 1e-8).
    pub delta: f32,
    /// `rms_decay` (default 0.99).
    pub rms_decay: f32,
    /// `weight_decay` λ.
    pub weight_decay: f32,
    /// `regularization_type` (default L2).
    pub regularization: Regularization,
    /// `clip_gradients` when ≥ 0 (Caffe's default −1 means off).
    pub clip_gradients: Option<f32>,
    /// `iter_size`: forward/backward passes accumulated per update.
    pub iter_size: usize,
    /// `max_iter`.
    pub max_iter: u64,
    /// `display` period (0 = never).
    pub display: u64,
    /// `average_loss` window for the displayed loss.
    pub average_loss: usize,
    /// `test_interval` (0 = never).
    pub test_interval: u64,
    /// `test_initialization`: also test before the first update.
    pub test_initialization: bool,
    /// `snapshot` period (0 = only after training).
    pub snapshot: u64,
    /// `snapshot_prefix` as written (see `state::resolve_snapshot_prefix`).
    pub snapshot_prefix: Option<String>,
    /// `snapshot_after_train` (default true).
    pub snapshot_after_train: bool,
    /// `random_seed` when ≥ 0.
    pub random_seed: Option<u64>,
    /// The train net.
    pub train_net: NetSource,
    /// The test nets in Caffe's order: `test_net_param`s, `test_net`s, then instances of the
    /// generic `net`/`net_param` for the remaining `test_iter` entries.
    pub test_nets: Vec<TestNet>,
}

fn non_negative(field: &'static str, v: Option<i32>, default: i32) -> Result<u64, ConfigError> {
    let v = v.unwrap_or(default);
    u64::try_from(v).map_err(|_| invalid(field, format!("must not be negative, got {v}")))
}

fn method_of(p: &SolverParameter) -> Result<Method, ConfigError> {
    let from_name = |s: &str| match s {
        "SGD" => Some(Method::Sgd),
        "Nesterov" => Some(Method::Nesterov),
        "AdaGrad" => Some(Method::AdaGrad),
        "RMSProp" => Some(Method::RmsProp),
        "AdaDelta" => Some(Method::AdaDelta),
        "Adam" => Some(Method::Adam),
        _ => None,
    };
    match (p.solver_type, &p.r#type) {
        // Caffe's UpgradeSolverType refuses both at once.
        (Some(_), Some(_)) => Err(invalid(
            "solver_type",
            "the legacy solver_type enum and the type string cannot both be given",
        )),
        (Some(t), None) => match SolverType::try_from(t) {
            Ok(SolverType::Sgd) => Ok(Method::Sgd),
            Ok(SolverType::Nesterov) => Ok(Method::Nesterov),
            Ok(SolverType::Adagrad) => Ok(Method::AdaGrad),
            Ok(SolverType::Rmsprop) => Ok(Method::RmsProp),
            Ok(SolverType::Adadelta) => Ok(Method::AdaDelta),
            Ok(SolverType::Adam) => Ok(Method::Adam),
            Err(_) => Err(invalid("solver_type", format!("unknown value {t}"))),
        },
        (None, _) => from_name(p.r#type()).ok_or_else(|| {
            invalid(
                "type",
                format!(
                    "unknown solver type '{}' (known: SGD, Nesterov, AdaGrad, RMSProp, AdaDelta, Adam)",
                    p.r#type()
                ),
            )
        }),
    }
}

fn policy_of(p: &SolverParameter) -> Result<LrPolicy, ConfigError> {
    let name = p.lr_policy.as_deref().ok_or_else(|| {
        invalid(
            "lr_policy",
            "is required (fixed, step, multistep, exp, inv, poly or sigmoid)",
        )
    })?;
    let stepsize = |need_positive: bool| -> Result<u32, ConfigError> {
        let s = p.stepsize();
        if s < 0 || (need_positive && s == 0) {
            return Err(invalid(
                "stepsize",
                format!("must be positive for lr_policy '{name}', got {s}"),
            ));
        }
        Ok(s as u32)
    };
    Ok(match name {
        "fixed" => LrPolicy::Fixed,
        "step" => LrPolicy::Step {
            gamma: p.gamma(),
            stepsize: stepsize(true)?,
        },
        "multistep" => {
            let mut stepvalues = Vec::with_capacity(p.stepvalue.len());
            for &v in &p.stepvalue {
                let v = u32::try_from(v)
                    .map_err(|_| invalid("stepvalue", format!("must not be negative, got {v}")))?;
                if stepvalues.last().is_some_and(|&last| v <= last) {
                    return Err(invalid("stepvalue", "values must increase"));
                }
                stepvalues.push(v);
            }
            LrPolicy::MultiStep {
                gamma: p.gamma(),
                stepvalues,
            }
        }
        "exp" => LrPolicy::Exp { gamma: p.gamma() },
        "inv" => LrPolicy::Inv {
            gamma: p.gamma(),
            power: p.power(),
        },
        "poly" => {
            let max_iter = p.max_iter();
            if max_iter <= 0 {
                return Err(invalid("max_iter", "must be positive for lr_policy 'poly'"));
            }
            LrPolicy::Poly {
                power: p.power(),
                max_iter: max_iter as u32,
            }
        }
        "sigmoid" => LrPolicy::Sigmoid {
            gamma: p.gamma(),
            stepsize: stepsize(false)?,
        },
        other => {
            return Err(invalid(
                "lr_policy",
                format!(
                "unknown policy '{other}' (known: fixed, step, multistep, exp, inv, poly, sigmoid)"
            ),
            ))
        }
    })
}

fn nets_of(p: &SolverParameter) -> Result<(NetSource, Vec<TestNet>), ConfigError> {
    let train_sources = [
        p.net.clone().map(NetSource::File),
        p.net_param.clone().map(|n| NetSource::Inline(Box::new(n))),
        p.train_net.clone().map(NetSource::File),
        p.train_net_param
            .clone()
            .map(|n| NetSource::Inline(Box::new(n))),
    ];
    let mut given = train_sources.iter().flatten();
    let train = given.next().cloned().ok_or_else(|| {
        invalid(
            "net",
            "a train net is required: one of net, net_param, train_net, train_net_param",
        )
    })?;
    if given.next().is_some() {
        return Err(invalid(
            "net",
            "only one of net, net_param, train_net, train_net_param may specify the train net",
        ));
    }
    let generic = match (&p.net, &p.net_param) {
        (Some(_), Some(_)) => return Err(invalid("net", "net and net_param cannot both be given")),
        (Some(f), None) => Some(NetSource::File(f.clone())),
        (None, Some(n)) => Some(NetSource::Inline(Box::new(n.clone()))),
        (None, None) => None,
    };
    let mut specific: Vec<NetSource> = p
        .test_net_param
        .iter()
        .map(|n| NetSource::Inline(Box::new(n.clone())))
        .collect();
    specific.extend(p.test_net.iter().cloned().map(NetSource::File));
    let n_iter = p.test_iter.len();
    if n_iter < specific.len() || (generic.is_none() && n_iter != specific.len()) {
        return Err(invalid(
            "test_iter",
            format!(
                "must be given once per test net ({} test nets, {} test_iter)",
                specific.len(),
                n_iter
            ),
        ));
    }
    let mut tests = Vec::with_capacity(n_iter);
    for (i, &iters) in p.test_iter.iter().enumerate() {
        let iters = usize::try_from(iters)
            .map_err(|_| invalid("test_iter", format!("must not be negative, got {iters}")))?;
        let source = match specific.get(i) {
            Some(s) => s.clone(),
            None => generic
                .clone()
                .ok_or_else(|| invalid("test_iter", "more entries than test nets"))?,
        };
        tests.push(TestNet { source, iters });
    }
    Ok((train, tests))
}

impl SolverConfig {
    /// Resolves a parsed solver file. Refuses what Caffe's `Solver::Init` would abort on:
    /// no or several train nets, a `test_iter` count that does not fit the test nets, test
    /// nets without a positive `test_interval`, momentum with AdaGrad or RMSProp, negative
    /// counts, an unknown policy, type or regularisation.
    pub fn from_proto(p: &SolverParameter) -> Result<Self, ConfigError> {
        let method = method_of(p)?;
        let lr_policy = policy_of(p)?;
        let (train_net, test_nets) = nets_of(p)?;
        let test_interval = non_negative("test_interval", p.test_interval, 0)?;
        if !test_nets.is_empty() && test_interval == 0 {
            return Err(invalid(
                "test_interval",
                "must be positive when test nets are given",
            ));
        }
        let momentum = p.momentum();
        if matches!(method, Method::AdaGrad | Method::RmsProp) && momentum != 0.0 {
            return Err(invalid(
                "momentum",
                format!("cannot be used with {}", method.name()),
            ));
        }
        let rms_decay = p.rms_decay();
        if method == Method::RmsProp && !(0.0..1.0).contains(&rms_decay) {
            return Err(invalid(
                "rms_decay",
                format!("must be in [0, 1), got {rms_decay}"),
            ));
        }
        let regularization = match p.regularization_type() {
            "L2" => Regularization::L2,
            "L1" => Regularization::L1,
            other => {
                return Err(invalid(
                    "regularization_type",
                    format!("unknown type '{other}' (L1 or L2)"),
                ))
            }
        };
        let base_lr = p.base_lr();
        if !base_lr.is_finite() || base_lr < 0.0 {
            return Err(invalid(
                "base_lr",
                format!("must be a finite non-negative number, got {base_lr}"),
            ));
        }
        let iter_size = non_negative("iter_size", p.iter_size, 1)?;
        if iter_size == 0 {
            return Err(invalid("iter_size", "must be at least 1"));
        }
        let average_loss = non_negative("average_loss", p.average_loss, 1)?;
        if average_loss == 0 {
            return Err(invalid("average_loss", "must be at least 1"));
        }
        let clip = p.clip_gradients();
        Ok(Self {
            method,
            base_lr,
            lr_policy,
            momentum,
            momentum2: p.momentum2(),
            delta: p.delta(),
            rms_decay,
            weight_decay: p.weight_decay(),
            regularization,
            clip_gradients: (clip >= 0.0).then_some(clip),
            iter_size: iter_size as usize,
            max_iter: non_negative("max_iter", p.max_iter, 0)?,
            display: non_negative("display", p.display, 0)?,
            average_loss: average_loss as usize,
            test_interval,
            test_initialization: p.test_initialization(),
            snapshot: non_negative("snapshot", p.snapshot, 0)?,
            snapshot_prefix: p.snapshot_prefix.clone(),
            snapshot_after_train: p.snapshot_after_train(),
            random_seed: u64::try_from(p.random_seed()).ok(),
            train_net,
            test_nets,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> SolverParameter {
        SolverParameter {
            net: Some("train_val.prototxt".into()),
            base_lr: Some(0.001),
            lr_policy: Some("step".into()),
            gamma: Some(0.1),
            stepsize: Some(10),
            max_iter: Some(30),
            momentum: Some(0.9),
            weight_decay: Some(0.0005),
            ..Default::default()
        }
    }

    #[test]
    fn defaults_follow_caffe() {
        let c = SolverConfig::from_proto(&base()).unwrap();
        assert_eq!(c.method, Method::Sgd);
        assert_eq!(c.regularization, Regularization::L2);
        assert_eq!(c.clip_gradients, None);
        assert_eq!((c.iter_size, c.average_loss), (1, 1));
        assert!(c.snapshot_after_train && c.test_initialization);
        assert_eq!(c.random_seed, None);
        assert_eq!((c.delta, c.momentum2, c.rms_decay), (1e-8, 0.999, 0.99));
        assert_eq!(c.train_net, NetSource::File("train_val.prototxt".into()));
        assert!(c.test_nets.is_empty());
    }

    #[test]
    fn generic_net_serves_every_test_iter_after_the_specific_ones() {
        let mut p = base();
        p.test_net = vec!["a.prototxt".into()];
        p.test_iter = vec![3, 5];
        p.test_interval = Some(10);
        let c = SolverConfig::from_proto(&p).unwrap();
        assert_eq!(c.test_nets.len(), 2);
        assert_eq!(c.test_nets[0].source, NetSource::File("a.prototxt".into()));
        assert_eq!(
            c.test_nets[1].source,
            NetSource::File("train_val.prototxt".into())
        );
        assert_eq!((c.test_nets[0].iters, c.test_nets[1].iters), (3, 5));
    }

    #[test]
    fn legacy_solver_type_enum_maps_to_the_type_string() {
        let mut p = base();
        p.solver_type = Some(SolverType::Nesterov as i32);
        assert_eq!(
            SolverConfig::from_proto(&p).unwrap().method,
            Method::Nesterov
        );
        p.r#type = Some("SGD".into());
        let e = SolverConfig::from_proto(&p).unwrap_err();
        assert_eq!(e.field, "solver_type");
    }

    #[test]
    fn what_caffe_aborts_on_is_a_named_error() {
        type Edit = Box<dyn Fn(&mut SolverParameter)>;
        let cases: Vec<(Edit, &str)> = vec![
            (Box::new(|p| p.net = None), "net"),
            (Box::new(|p| p.train_net = Some("x".into())), "net"),
            (Box::new(|p| p.lr_policy = None), "lr_policy"),
            (
                Box::new(|p| p.lr_policy = Some("cosine".into())),
                "lr_policy",
            ),
            (Box::new(|p| p.stepsize = Some(0)), "stepsize"),
            (Box::new(|p| p.max_iter = Some(-5)), "max_iter"),
            (Box::new(|p| p.iter_size = Some(0)), "iter_size"),
            (Box::new(|p| p.r#type = Some("Lion".into())), "type"),
            (
                Box::new(|p| p.regularization_type = Some("L3".into())),
                "regularization_type",
            ),
            (
                Box::new(|p| {
                    p.r#type = Some("AdaGrad".into());
                }),
                "momentum",
            ),
            (
                Box::new(|p| {
                    p.test_iter = vec![3];
                    p.test_interval = Some(0);
                }),
                "test_interval",
            ),
            (
                Box::new(|p| {
                    p.net = None;
                    p.train_net = Some("t".into());
                    p.test_iter = vec![3];
                    p.test_interval = Some(5);
                }),
                "test_iter",
            ),
            (
                Box::new(|p| {
                    p.lr_policy = Some("multistep".into());
                    p.stepvalue = vec![10, 5];
                }),
                "stepvalue",
            ),
        ];
        for (edit, field) in cases {
            let mut p = base();
            edit(&mut p);
            let e = SolverConfig::from_proto(&p).unwrap_err();
            assert_eq!(e.field, field, "{e}");
            assert!(e.to_string().contains(field), "{e}");
        }
    }
}
