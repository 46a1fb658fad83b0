//! `configs/peer/config.json`: every key optional, unknown keys refused,
//! every error naming the file and the field. Keys mirror the `peer run`
//! flags (snake_case); flags override them. See the README for the table.

use crate::BackendKind;
use crate::Error;
use executor_core::{CacheConfig, Limits, ModuleLimits, PersistencePolicy};
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// The default config file, relative to the working directory.
pub const DEFAULT_PATH: &str = "configs/peer/config.json";

/// The environment variable naming the config file when `--config` does
/// not.
pub const CONFIG_ENV: &str = "PEER_CONFIG";

/// Where the config's JSON Schema is kept, relative to the repository
/// root (a test keeps it equal to [`schema`]).
pub const SCHEMA_PATH: &str = "configs/peer/config.schema.json";

/// The config file's contents.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(
    title = "peer config",
    description = "configs/peer/config.json: every key optional; `peer run` flags override them."
)]
pub struct Config {
    /// A JSON Schema reference for editors; ignored.
    #[serde(rename = "$schema")]
    pub schema: Option<String>,
    /// Backend to run; default wasmtime when compiled in, else the first of
    /// wasmer, wasmi.
    pub backend: Option<BackendKind>,
    /// Persistence policy; default every transaction. Either the command
    /// line's spelling (`"every-tx:1"`, `"every-block:2"`, `"until-crash"`,
    /// `"fresh"`) or the object forms (`{"every_transactions": 1}`,
    /// `"until_crash"`).
    #[serde(default, deserialize_with = "any_policy")]
    #[schemars(schema_with = "policy_schema")]
    pub policy: Option<PersistencePolicy>,
    /// Executor file (`.wasm` or `.wat`), relative to the config file's
    /// directory; default the embedded default executor.
    pub executor: Option<PathBuf>,
    /// Transactions to validate; default 10,000.
    pub transactions: Option<u64>,
    /// Transactions per block; default 100.
    pub block_size: Option<u64>,
    /// Workload seed; default 42.
    pub seed: Option<u64>,
    /// Fuel per transaction.
    pub fuel: Option<u64>,
    /// Fuel for `start` + `executor_init`.
    pub init_fuel: Option<u64>,
    /// Most linear memory per instance, bytes.
    pub memory_limit: Option<u64>,
    /// Most elements per table.
    pub table_elements: Option<u64>,
    /// Module size limits.
    pub module_limits: Option<ModuleLimits>,
    /// Recycle watermark, bytes; default half of `memory_limit`.
    pub recycle_watermark: Option<u64>,
    /// Deterministic stack budget, bytes of the frame model.
    pub max_stack: Option<u64>,
    /// Upgrade the executor every N blocks (≥ 1).
    pub upgrade_every: Option<u64>,
    /// Audit every K-th transaction (≥ 1).
    pub audit_every: Option<std::num::NonZeroU32>,
    /// The memory cap checked at load, bytes.
    pub memory_cap: Option<u64>,
    /// The compiled-executor cache; absent or `{"enabled": false}`: off.
    pub cache: Option<CacheSettings>,
    /// Restore the blank snapshot instead of re-running `executor_init`
    /// (default true; `--no-snapshot`).
    pub snapshots: Option<bool>,
    /// How a blank is done (`--blank`): `auto` (default), `restore`,
    /// `rebuild`.
    pub blank: Option<executor_core::BlankMethod>,
    /// Workers of in-order parallel validation (`--threads`).
    pub threads: Option<std::num::NonZeroUsize>,
    /// Pre-validation workers (`--prevalidate`).
    pub prevalidate: Option<std::num::NonZeroUsize>,
    /// Percent of hot transfers in the workload, 0–100 (`--hot-percent`).
    pub hot_percent: Option<u64>,
    /// Position of an upgrade in its block (`--upgrade-offset`).
    pub upgrade_offset: Option<u64>,
    /// Prometheus metrics file (`--metrics`), relative to the config file.
    pub metrics: Option<PathBuf>,
    /// Its format (`--metrics-format`): `prometheus` (0.0.4, default) or
    /// `openmetrics`.
    pub metrics_format: Option<crate::metrics::MetricsFormat>,
}

/// A policy in the command line's spelling or in its object forms.
fn any_policy<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<PersistencePolicy>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Any {
        Text(String),
        Object(PersistencePolicy),
    }
    Ok(match Option::<Any>::deserialize(d)? {
        None => None,
        Some(Any::Object(policy)) => Some(policy),
        Some(Any::Text(text)) => Some(text.parse().or_else(|e: executor_core::policy::ParsePolicyError| {
            serde_json::from_value(serde_json::Value::String(text.clone())).map_err(|_| serde::de::Error::custom(e))
        })?),
    })
}

/// The schema of [`any_policy`]'s spellings.
fn policy_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "description": "Persistence policy: the command line's spelling or an object form.",
        "oneOf": [
            {"type": "string", "pattern": "^(every-tx|every-block)(:[1-9][0-9]*)?$|^(until-crash|until_crash|fresh)$"},
            {
                "type": "object",
                "properties": {"every_transactions": {"type": "integer", "minimum": 1, "maximum": u32::MAX}},
                "required": ["every_transactions"],
                "additionalProperties": false
            },
            {
                "type": "object",
                "properties": {"every_blocks": {"type": "integer", "minimum": 1, "maximum": u32::MAX}},
                "required": ["every_blocks"],
                "additionalProperties": false
            },
            {"type": "null"}
        ]
    })
}

/// The config's JSON Schema (draft 2020-12), generated from [`Config`].
pub fn schema() -> String {
    let schema = schemars::schema_for!(Config);
    serde_json::to_string_pretty(&schema).expect("a schema serialises") + "\n"
}

/// The `cache` key: where compiled executors are kept between runs.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CacheSettings {
    /// Default true.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// The directory, relative to the config file's directory; created
    /// owner-only (0700). A directory others can write is refused.
    pub dir: PathBuf,
    /// The most bytes kept; least recently used entries are evicted.
    /// Default 512 MiB.
    pub max_bytes: Option<u64>,
}

fn yes() -> bool {
    true
}

/// A path from the config file, resolved against the file's directory
/// (`None`: no file was read; the path stands as given).
pub fn relative_to(config_dir: Option<&Path>, path: &Path) -> PathBuf {
    config_dir.map_or_else(|| path.to_path_buf(), |d| d.join(path))
}

impl Config {
    /// Reads `path`. A missing file is an error only when `required` (it
    /// was named with `--config`); otherwise the built-in defaults apply.
    pub fn load(path: &Path, required: bool) -> Result<(Config, Option<PathBuf>), Error> {
        let err = |message: String| Error::Config { path: path.display().to_string(), message };
        if !required && !path.exists() {
            return Ok((Config::default(), None));
        }
        let bytes = crate::input::read_bounded(path, crate::input::MAX_CONFIG_BYTES).map_err(err)?;
        let text = String::from_utf8(bytes).map_err(|_| err("not UTF-8 text".into()))?;
        let de = &mut serde_json::Deserializer::from_str(&text);
        let config: Config = serde_path_to_error::deserialize(de).map_err(|e| {
            let field = e.path().to_string();
            let inner = e.into_inner();
            if field == "." { err(inner.to_string()) } else { err(format!("field `{field}`: {inner}")) }
        })?;
        if config.block_size == Some(0) {
            return Err(err("field `block_size`: must be at least 1".into()));
        }
        if config.upgrade_every == Some(0) {
            return Err(err("field `upgrade_every`: must be at least 1".into()));
        }
        let dir = path.parent().map(Path::to_path_buf);
        Ok((config, dir))
    }

    /// The cache these settings describe (`dir` resolved against
    /// `config_dir`), or `None` if off.
    pub fn cache(&self, config_dir: Option<&Path>) -> Option<CacheConfig> {
        let c = self.cache.as_ref().filter(|c| c.enabled)?;
        Some(CacheConfig {
            dir: relative_to(config_dir, &c.dir),
            max_bytes: c.max_bytes.unwrap_or(executor_core::cache::DEFAULT_MAX_BYTES),
        })
    }

    /// The limits these settings describe, defaults elsewhere.
    pub fn limits(&self) -> Limits {
        let d = Limits::default();
        Limits {
            fuel: self.fuel.unwrap_or(d.fuel),
            init_fuel: self.init_fuel.unwrap_or(d.init_fuel),
            memory_bytes: self.memory_limit.unwrap_or(d.memory_bytes),
            table_elements: self.table_elements.unwrap_or(d.table_elements),
            max_stack: self.max_stack.unwrap_or(d.max_stack),
            memory_cap: self.memory_cap.unwrap_or(d.memory_cap),
            module: self.module_limits.clone().unwrap_or(d.module),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_str(text: &str) -> Result<Config, Error> {
        let dir = std::env::temp_dir().join(format!("peer-config-test-{}-{}", std::process::id(), text.len()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("config.json");
        std::fs::write(&path, text).unwrap();
        Config::load(&path, true).map(|(c, _)| c)
    }

    #[test]
    fn the_shipped_config_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/peer/config.json");
        let (config, _) = Config::load(&path, true).unwrap();
        assert_eq!(config.policy, Some(PersistencePolicy::default()));
        assert_eq!(config.limits(), Limits::default(), "the shipped file states the defaults");
    }

    /// The checked-in schema is the one the types generate (run with
    /// `UPDATE_SCHEMA=1` to rewrite it), and the shipped config names it.
    #[test]
    fn the_checked_in_schema_is_current() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(SCHEMA_PATH);
        let generated = schema();
        if std::env::var_os("UPDATE_SCHEMA").is_some() {
            std::fs::write(&path, &generated).unwrap();
        }
        let kept = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(kept == generated, "{SCHEMA_PATH} is stale: run `UPDATE_SCHEMA=1 cargo test -p peer --lib schema`");
        let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/peer/config.json");
        let shipped: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(shipped).unwrap()).unwrap();
        assert_eq!(shipped["$schema"], "./config.schema.json");
        let v: serde_json::Value = serde_json::from_str(&generated).unwrap();
        let keys = v["properties"].as_object().unwrap();
        for key in ["policy", "backend", "module_limits", "cache", "blank", "metrics_format", "$schema"] {
            assert!(keys.contains_key(key), "{key} in the schema");
        }
        assert_eq!(v["additionalProperties"], false, "unknown keys are refused, as the loader does");
        for key in shipped.as_object().unwrap().keys() {
            assert!(keys.contains_key(key), "the shipped config's {key} is in the schema");
        }
    }

    #[test]
    fn errors_name_the_field() {
        let e = load_str(r#"{"fuel": "lots"}"#).unwrap_err();
        assert!(e.to_string().contains("field `fuel`"), "{e}");
        let e = load_str(r#"{"fule": 1}"#).unwrap_err();
        assert!(e.to_string().contains("unknown field `fule`"), "{e}");
        let e = load_str(r#"{"module_limits": {"bytes": 1, "functionz": 2}}"#).unwrap_err();
        assert!(e.to_string().contains("module_limits"), "{e}");
        let e = load_str(r#"{"policy": {"every_transactions": 0}}"#).unwrap_err();
        assert!(e.to_string().contains("field `policy"), "{e}");
        let e = load_str(r#"{"backend": "v8"}"#).unwrap_err();
        assert!(e.to_string().contains("field `backend`"), "{e}");
        let e = load_str(r#"{"block_size": 0}"#).unwrap_err();
        assert!(e.to_string().contains("block_size"), "{e}");
        assert!(load_str("{").unwrap_err().to_string().contains("config "));
        let ok = load_str(r#"{"policy": "until_crash", "memory_limit": 1048576}"#).unwrap();
        assert_eq!(ok.policy, Some(PersistencePolicy::UntilCrash));
        for (text, spelled) in [
            (r#""until-crash""#, "until-crash"),
            (r#""every-tx:3""#, "every-tx:3"),
            (r#""every-block:2""#, "every-block:2"),
            (r#""fresh""#, "fresh"),
            (r#"{"every_blocks": 4}"#, "every-block:4"),
        ] {
            let c = load_str(&format!(r#"{{"$schema": "./peer.schema.json", "policy": {text}}}"#)).unwrap();
            assert_eq!(c.policy.unwrap().to_string(), spelled, "{text}");
        }
        let e = load_str(r#"{"policy": "every-tx:0"}"#).unwrap_err();
        assert!(e.to_string().contains("field `policy`"), "{e}");
        assert_eq!(ok.limits().memory_bytes, 1 << 20);
    }
}
