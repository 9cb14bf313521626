//! The DynamoDB sender.

use std::time::Duration;

use abacus::Snapshot;
use aws_config::BehaviorVersion;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, PutRequest, ScalarAttributeType,
    TableStatus, WriteRequest,
};

use super::encode::item;
use crate::sinks::queue::{Backend, SendError};
use crate::sinks::retry::Backoff;
use crate::sinks::sqlite::encode::rows;
use crate::sinks::{DynamoDbConfig, StorageError};

/// Items per `BatchWriteItem` (the service's limit).
pub const BATCH: usize = 25;
/// `BatchWriteItem` requests in flight for one window.
const CONCURRENCY: usize = 8;
/// Rounds of resending unprocessed items within one window's delivery.
const UNPROCESSED_ROUNDS: u32 = 8;

/// DynamoDB backend for [`crate::sinks::queue::run_remote`].
#[derive(Debug)]
pub struct DynamoDb {
    client: Client,
    table: String,
    table_ready: bool,
}

fn retryable(e: impl std::fmt::Display) -> SendError {
    SendError::Retryable(e.to_string())
}

impl DynamoDb {
    /// Builds the client from the AWS environment and `config`. Does not contact the service
    /// (the table is checked / created on the first write), so a store that is down at
    /// start-up only delays delivery.
    ///
    /// # Errors
    /// None today; the `Result` leaves room for configuration checks.
    pub async fn connect(config: &DynamoDbConfig) -> Result<DynamoDb, StorageError> {
        let timeout = Duration::from_millis(config.timeout_ms.max(1));
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .timeout_config(
                aws_config::timeout::TimeoutConfig::builder()
                    .operation_attempt_timeout(timeout)
                    .connect_timeout(timeout.min(Duration::from_secs(2)))
                    .build(),
            )
            // Our own backoff and spill govern retries.
            .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(1));
        let region = config
            .region
            .clone()
            .or_else(|| std::env::var("AWS_REGION").ok())
            .or_else(|| std::env::var("AWS_DEFAULT_REGION").ok())
            .unwrap_or_else(|| "us-east-1".to_owned());
        loader = loader.region(aws_config::Region::new(region));
        if let Some(ep) = &config.endpoint {
            loader = loader.endpoint_url(ep);
            if std::env::var_os("AWS_ACCESS_KEY_ID").is_none() {
                loader = loader.credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
                    "local",
                    "local",
                    None,
                    None,
                    "abacus-static",
                ));
            }
        }
        let sdk = loader.load().await;
        Ok(DynamoDb {
            client: Client::new(&sdk),
            table: config.table.clone(),
            table_ready: false,
        })
    }

    /// Checks that the table exists, creating it (and waiting until it is active) if not.
    async fn ensure_table(&mut self) -> Result<(), SendError> {
        if self.table_ready {
            return Ok(());
        }
        let described = self
            .client
            .describe_table()
            .table_name(&self.table)
            .send()
            .await;
        match described {
            Ok(_) => {}
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_not_found_exception()) =>
            {
                tracing::info!(table = %self.table, "Creating DynamoDB table");
                let attr = |n: &str, t| {
                    AttributeDefinition::builder()
                        .attribute_name(n)
                        .attribute_type(t)
                        .build()
                        .map_err(retryable)
                };
                let key = |n: &str, t| {
                    KeySchemaElement::builder()
                        .attribute_name(n)
                        .key_type(t)
                        .build()
                        .map_err(retryable)
                };
                let created = self
                    .client
                    .create_table()
                    .table_name(&self.table)
                    .attribute_definitions(attr("series", ScalarAttributeType::S)?)
                    .attribute_definitions(attr("window_start", ScalarAttributeType::N)?)
                    .key_schema(key("series", KeyType::Hash)?)
                    .key_schema(key("window_start", KeyType::Range)?)
                    .billing_mode(BillingMode::PayPerRequest)
                    .send()
                    .await;
                if let Err(e) = created {
                    // Another writer may have created it meanwhile.
                    if !e
                        .as_service_error()
                        .is_some_and(|s| s.is_resource_in_use_exception())
                    {
                        return Err(retryable(aws_sdk_dynamodb::error::DisplayErrorContext(e)));
                    }
                }
            }
            Err(e) => return Err(retryable(aws_sdk_dynamodb::error::DisplayErrorContext(e))),
        }
        // Wait (bounded) until the table is active.
        for _ in 0..100 {
            let d = self
                .client
                .describe_table()
                .table_name(&self.table)
                .send()
                .await
                .map_err(|e| retryable(aws_sdk_dynamodb::error::DisplayErrorContext(e)))?;
            if d.table().and_then(|t| t.table_status()) == Some(&TableStatus::Active) {
                self.table_ready = true;
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(SendError::Retryable(format!(
            "table {} did not become active",
            self.table
        )))
    }
}

/// One `BatchWriteItem` of at most [`BATCH`] puts, resending unprocessed items with backoff.
/// The flag is true when the table does not exist (any more).
async fn write_batch(
    client: Client,
    table: String,
    mut batch: Vec<WriteRequest>,
) -> Result<(), (SendError, bool)> {
    let mut backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(2));
    for _ in 0..UNPROCESSED_ROUNDS {
        let out = client
            .batch_write_item()
            .request_items(&table, batch)
            .send()
            .await;
        let out = match out {
            Ok(o) => o,
            Err(e) => {
                let service = e.as_service_error();
                let missing = service.is_some_and(|s| s.is_resource_not_found_exception());
                // A malformed item is a client fault that no retry fixes.
                let rejected = service
                    .and_then(aws_sdk_dynamodb::error::ProvideErrorMetadata::code)
                    == Some("ValidationException");
                let msg = aws_sdk_dynamodb::error::DisplayErrorContext(e).to_string();
                let err = if rejected {
                    SendError::Rejected(msg)
                } else {
                    SendError::Retryable(msg)
                };
                return Err((err, missing));
            }
        };
        batch = out
            .unprocessed_items
            .and_then(|mut m| m.remove(&table))
            .unwrap_or_default();
        if batch.is_empty() {
            return Ok(());
        }
        tracing::debug!(items = batch.len(), "Retrying unprocessed DynamoDB items");
        tokio::time::sleep(backoff.next_delay()).await;
    }
    Err((
        SendError::Retryable(format!("{} items still unprocessed", batch.len())),
        false,
    ))
}

impl Backend for DynamoDb {
    fn name(&self) -> &'static str {
        "dynamodb"
    }

    fn prepare(&mut self, window: &Snapshot) -> Result<Vec<u8>, String> {
        serde_json::to_vec(window).map_err(|e| e.to_string())
    }

    async fn send(&mut self, payload: &[u8]) -> Result<(), SendError> {
        let window: Snapshot = serde_json::from_slice(payload)
            .map_err(|e| SendError::Rejected(format!("corrupt payload: {e}")))?;
        self.ensure_table().await?;
        let mut requests = Vec::new();
        for r in rows(&window) {
            let put = PutRequest::builder()
                .set_item(Some(item(&r)))
                .build()
                .map_err(|e| SendError::Rejected(e.to_string()))?;
            requests.push(WriteRequest::builder().put_request(put).build());
        }
        // Up to CONCURRENCY batches in flight. After a failure no new batch is started, and the
        // window fails, to be retried whole (puts are idempotent).
        let mut inflight = tokio::task::JoinSet::new();
        let mut first_err: Option<SendError> = None;
        let mut chunks = requests.into_iter().peekable();
        loop {
            while first_err.is_none() && inflight.len() < CONCURRENCY && chunks.peek().is_some() {
                let batch: Vec<WriteRequest> = chunks.by_ref().take(BATCH).collect();
                inflight.spawn(write_batch(self.client.clone(), self.table.clone(), batch));
            }
            let Some(done) = inflight.join_next().await else {
                break;
            };
            let result = done.map_err(|e| (SendError::Retryable(e.to_string()), false));
            if let Err((e, missing)) = result.and_then(|r| r) {
                if missing {
                    self.table_ready = false;
                }
                first_err.get_or_insert(e);
            }
        }
        if let Some(e) = first_err {
            return Err(e);
        }
        Ok(())
    }
}
