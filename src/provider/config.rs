//! A `[providers.NAME]` table: the call settings every provider shares, and the settings of its
//! own wire protocol, whose struct lives in the provider's file.
//!
//! serde cannot flatten shared fields into an internally tagged enum and still refuse unknown
//! keys, and a typo must never fall back to a default. So the table is read in two steps: the
//! shared [`CallConfig`] and the provider's own [`ApiConfig`] each read their keys, and a key
//! that neither declares is an error that says which kind of provider it belongs to, if any.

use serde::Deserialize;

use super::calls::CallConfig;
use super::{bedrock, openai};

/// The wire protocol a provider speaks: the `kind` key of its table, and part of every cache key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProviderKind {
    /// OpenAI Chat Completions, or any server that speaks it (vLLM, llama.cpp, Ollama).
    Openai,
    /// Amazon Bedrock's Converse API.
    Bedrock,
}

impl ProviderKind {
    /// Every kind, in the order messages list them.
    pub const ALL: [ProviderKind; 2] = [ProviderKind::Openai, ProviderKind::Bedrock];

    /// The kind named `name` (as in config files and cache exports).
    pub fn parse(name: &str) -> Option<ProviderKind> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == name)
    }

    /// The name used in config files, reports and cache keys.
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::Openai => "openai",
            ProviderKind::Bedrock => "bedrock",
        }
    }
}

/// A provider's own settings, chosen by `kind`. Each variant's struct is defined, documented
/// and range-checked in that provider's file; adding a provider adds a variant here.
#[derive(Debug, Clone, PartialEq)]
pub enum ApiConfig {
    Openai(openai::OpenAiConfig),
    Bedrock(bedrock::BedrockConfig),
}

impl ApiConfig {
    /// The kind of provider these settings are for.
    pub fn kind(&self) -> ProviderKind {
        match self {
            ApiConfig::Openai(_) => ProviderKind::Openai,
            ApiConfig::Bedrock(_) => ProviderKind::Bedrock,
        }
    }

    /// The environment variable that holds this provider's API key, if it takes one: its value
    /// is masked in every message.
    pub fn api_key_env(&self) -> Option<&str> {
        match self {
            ApiConfig::Openai(openai) => Some(&openai.api_key_env),
            ApiConfig::Bedrock(_) => None,
        }
    }

    /// Range and form checks of the provider's own keys: `(key, message)` of the first problem.
    fn check(&self) -> Result<(), (&'static str, String)> {
        match self {
            ApiConfig::Openai(openai) => openai.check(),
            ApiConfig::Bedrock(bedrock) => {
                bedrock.check()?;
                super::bedrock_batch::check_config(bedrock)
            }
        }
    }

    /// Read the settings of `kind` from a table that holds only its own keys.
    fn read(kind: ProviderKind, own: &toml::Table) -> Result<ApiConfig, TableError> {
        Ok(match kind {
            ProviderKind::Openai => ApiConfig::Openai(read(own)?),
            ProviderKind::Bedrock => ApiConfig::Bedrock(read(own)?),
        })
    }

    /// The keys a table of `kind` may hold besides `kind` and the shared ones.
    fn keys(kind: ProviderKind) -> &'static [&'static str] {
        match kind {
            ProviderKind::Openai => fields_of::<openai::OpenAiConfig>(),
            ProviderKind::Bedrock => fields_of::<bedrock::BedrockConfig>(),
        }
    }
}

/// One `[providers.NAME]` table, read and checked.
#[derive(Debug, Clone, PartialEq)]
pub struct ProviderConfig {
    pub api: ApiConfig,
    pub calls: CallConfig,
}

/// What is wrong with a provider table: the key (when one is to blame), the message and a hint.
#[derive(Debug, Clone, PartialEq)]
pub struct TableError {
    pub key: Option<String>,
    pub message: String,
    pub hint: Option<String>,
}

impl TableError {
    fn at(key: impl Into<String>, message: impl Into<String>) -> TableError {
        TableError {
            key: Some(key.into()),
            message: message.into(),
            hint: None,
        }
    }

    fn hint(mut self, hint: impl Into<String>) -> TableError {
        self.hint = Some(hint.into());
        self
    }
}

impl ProviderConfig {
    /// Read a provider table: its `kind`, its shared and its own settings, every key accounted
    /// for and every number in range.
    pub fn from_table(table: &toml::Table) -> Result<ProviderConfig, TableError> {
        let kinds = ProviderKind::ALL.map(ProviderKind::as_str).join(", ");
        let kind = match table.get("kind") {
            None => return Err(TableError::at("kind", "missing `kind`").hint(format!("one of: {kinds}"))),
            Some(value) => value.as_str().and_then(ProviderKind::parse).ok_or_else(|| {
                TableError::at("kind", format!("unknown kind {value}")).hint(format!("one of: {kinds}"))
            })?,
        };
        let shared = fields_of::<CallConfig>();
        let own = ApiConfig::keys(kind);
        let unknown = table
            .keys()
            .find(|key| *key != "kind" && !shared.contains(&key.as_str()) && !own.contains(&key.as_str()));
        if let Some(key) = unknown {
            let owner = ProviderKind::ALL
                .into_iter()
                .find(|other| ApiConfig::keys(*other).contains(&key.as_str()));
            let error = match owner {
                Some(owner) => TableError::at(
                    key,
                    format!(
                        "`{key}` does not apply to provider kind `{}` (it is a key of kind `{}`)",
                        kind.as_str(),
                        owner.as_str()
                    ),
                ),
                None => TableError::at(key, format!("unknown field `{key}`")),
            };
            return Err(error.hint(format!(
                "kind `{}` takes {}; every kind takes {}",
                kind.as_str(),
                if own.is_empty() {
                    "nothing of its own".to_string()
                } else {
                    own.join(", ")
                },
                shared.join(", ")
            )));
        }
        let (shared_keys, own_keys): (toml::Table, toml::Table) = table
            .clone()
            .into_iter()
            .filter(|(key, _)| key != "kind")
            .partition(|(key, _)| shared.contains(&key.as_str()));
        let calls: CallConfig = read(&shared_keys)?;
        let api = ApiConfig::read(kind, &own_keys)?;
        for result in [calls.check(), api.check(), fits(&api, &calls)] {
            result.map_err(|(key, message)| {
                TableError::at(key, message).hint("the README's configuration section gives each key's range")
            })?;
        }
        Ok(ProviderConfig { api, calls })
    }

    /// The kind of provider.
    pub fn kind(&self) -> ProviderKind {
        self.api.kind()
    }
}

/// Checks across a provider's own keys and the shared ones: a Bedrock job needs at least
/// `batch_min_records` lines, so a batch must be allowed that many.
fn fits(api: &ApiConfig, calls: &CallConfig) -> Result<(), (&'static str, String)> {
    match api {
        ApiConfig::Bedrock(bedrock) => match bedrock.batch_min_records {
            Some(min) if min > calls.batch_max_lines => Err((
                "batch_min_records",
                format!(
                    "{min} is more than batch_max_lines ({}): Bedrock would refuse every job",
                    calls.batch_max_lines
                ),
            )),
            _ => Ok(()),
        },
        ApiConfig::Openai(_) => Ok(()),
    }
}

/// Deserialize `T` from the table, naming the key of a type error.
fn read<T: serde::de::DeserializeOwned>(table: &toml::Table) -> Result<T, TableError> {
    serde_path_to_error::deserialize(toml::Value::Table(table.clone())).map_err(|err| {
        let key = err.path().to_string();
        let message = err.into_inner().to_string();
        TableError {
            key: (key != ".").then_some(key),
            message: message.trim().to_string(),
            hint: None,
        }
    })
}

/// The field names of the struct `T`, as serde knows them: a deserializer that stops at the
/// struct's field list, so that the list in a message can never drift from the struct.
fn fields_of<T: serde::de::DeserializeOwned>() -> &'static [&'static str] {
    struct FieldList<'a>(&'a mut &'static [&'static str]);

    impl<'de> serde::Deserializer<'de> for FieldList<'_> {
        type Error = serde::de::value::Error;

        fn deserialize_any<V: serde::de::Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
            Err(serde::de::Error::custom("not a struct"))
        }

        fn deserialize_struct<V: serde::de::Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Self::Error> {
            *self.0 = fields;
            Err(serde::de::Error::custom("fields listed"))
        }

        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
            option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
            ignored_any
        }
    }

    let mut fields: &'static [&'static str] = &[];
    // The error is the point: the deserializer stops as soon as it has the list.
    let _ = T::deserialize(FieldList(&mut fields));
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(text: &str) -> toml::Table {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn kinds_parse_from_their_own_names() {
        for kind in ProviderKind::ALL {
            assert_eq!(ProviderKind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(ProviderKind::parse("anthropic"), None);
    }

    #[test]
    fn field_lists_come_from_the_structs() {
        assert_eq!(
            fields_of::<openai::OpenAiConfig>(),
            ["base_url", "api_key_env", "response_format", "token_limit"]
        );
        assert_eq!(
            fields_of::<bedrock::BedrockConfig>(),
            [
                "region",
                "endpoint_url",
                "batch_s3_uri",
                "batch_role_arn",
                "batch_min_records",
                "batch_endpoint_url",
                "s3_endpoint_url"
            ]
        );
        assert!(fields_of::<CallConfig>().contains(&"max_response_bytes"));
    }

    #[test]
    fn a_table_splits_into_shared_and_own_settings() {
        let config = ProviderConfig::from_table(&table(
            "kind = \"openai\"\nbase_url = \"http://127.0.0.1:1/v1\"\ntimeout_secs = 2\nconcurrency = 3",
        ))
        .unwrap();
        assert_eq!(config.kind(), ProviderKind::Openai);
        assert_eq!(config.calls.timeout_secs, 2.0);
        assert_eq!(config.calls.concurrency, Some(3));
        assert_eq!(config.calls.max_attempts, 5);
        let ApiConfig::Openai(own) = &config.api else {
            panic!("{config:?}")
        };
        assert_eq!(own.base_url.as_deref(), Some("http://127.0.0.1:1/v1"));
        assert_eq!(config.api.api_key_env(), Some("OPENAI_API_KEY"));

        let bedrock = ProviderConfig::from_table(&table("kind = \"bedrock\"\nregion = \"eu-west-1\"")).unwrap();
        assert_eq!(bedrock.kind(), ProviderKind::Bedrock);
        assert_eq!(bedrock.api.api_key_env(), None);
    }

    #[test]
    fn every_problem_names_its_key_and_hints_at_the_fix() {
        let cases = [
            ("region = \"x\"", "kind", "missing `kind`", "one of: openai, bedrock"),
            (
                "kind = \"anthropic\"",
                "kind",
                "unknown kind \"anthropic\"",
                "one of: openai, bedrock",
            ),
            ("kind = 3", "kind", "unknown kind 3", "one of"),
            (
                "kind = \"bedrock\"\ntoken_limit = \"max_tokens\"",
                "token_limit",
                "`token_limit` does not apply to provider kind `bedrock` (it is a key of kind `openai`)",
                "kind `bedrock` takes region, endpoint_url, batch_s3_uri, batch_role_arn, batch_min_records, batch_endpoint_url, s3_endpoint_url; every kind takes concurrency",
            ),
            (
                "kind = \"openai\"\nregion = \"us-east-1\"",
                "region",
                "does not apply to provider kind `openai` (it is a key of kind `bedrock`)",
                "base_url, api_key_env, response_format, token_limit",
            ),
            (
                "kind = \"openai\"\ntimeout = 3",
                "timeout",
                "unknown field `timeout`",
                "timeout_secs",
            ),
            (
                "kind = \"openai\"\ntimeout_secs = \"3\"",
                "timeout_secs",
                "invalid type: string \"3\"",
                "",
            ),
            (
                "kind = \"openai\"\nresponse_format = \"xml\"",
                "response_format",
                "unknown variant `xml`",
                "",
            ),
            (
                "kind = \"openai\"\nmax_attempts = 0",
                "max_attempts",
                "out of range",
                "range",
            ),
            (
                "kind = \"openai\"\ntimeout_secs = nan",
                "timeout_secs",
                "out of range",
                "range",
            ),
            (
                "kind = \"openai\"\nbase_url = \"ftp://x\"",
                "base_url",
                "not an http",
                "range",
            ),
            (
                "kind = \"openai\"\napi_key_env = \"sk-live-123\"",
                "api_key_env",
                "not hold a key",
                "range",
            ),
            (
                "kind = \"bedrock\"\nregion = \"us east\"",
                "region",
                "not an AWS region name",
                "range",
            ),
            (
                "kind = \"bedrock\"\nendpoint_url = \"\"",
                "endpoint_url",
                "not an http",
                "range",
            ),
            (
                "kind = \"bedrock\"\ns3_endpoint_url = \"s3.local\"",
                "s3_endpoint_url",
                "not an http",
                "range",
            ),
            (
                "kind = \"bedrock\"\nbatch_s3_uri = \"https://bucket/x\"\nbatch_role_arn = \"arn:aws:iam::111122223333:role/r\"",
                "batch_s3_uri",
                "not an s3:// URI",
                "range",
            ),
            (
                "kind = \"bedrock\"\nbatch_s3_uri = \"s3://Bucket_Name/x\"\nbatch_role_arn = \"arn:aws:iam::111122223333:role/r\"",
                "batch_s3_uri",
                "not an S3 bucket name",
                "range",
            ),
            (
                "kind = \"bedrock\"\nbatch_s3_uri = \"s3://bucket/x\"\nbatch_role_arn = \"arn:aws:iam::1111:role/r\"",
                "batch_role_arn",
                "not an IAM role ARN",
                "range",
            ),
            (
                "kind = \"bedrock\"\nbatch_s3_uri = \"s3://bucket/x\"",
                "batch_role_arn",
                "needs both batch_s3_uri and batch_role_arn",
                "range",
            ),
            (
                "kind = \"bedrock\"\nbatch_min_records = 0",
                "batch_min_records",
                "out of range (1 to 50000",
                "range",
            ),
            (
                "kind = \"openai\"\nbatch_max_lines = 50001",
                "batch_max_lines",
                "out of range",
                "range",
            ),
            (
                "kind = \"bedrock\"\nbatch_min_records = 200\nbatch_max_lines = 100",
                "batch_min_records",
                "200 is more than batch_max_lines (100): Bedrock would refuse every job",
                "range",
            ),
        ];
        for (text, key, message, hint) in cases {
            let err = ProviderConfig::from_table(&table(text)).unwrap_err();
            assert_eq!(err.key.as_deref(), Some(key), "{text}: {err:?}");
            assert!(err.message.contains(message), "{text}: {err:?}");
            assert!(
                err.hint.as_deref().unwrap_or_default().contains(hint),
                "{text}: {err:?}"
            );
        }
    }
}
