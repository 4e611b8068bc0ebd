//! Connections and request handlers.
//!
//! Each connection reads a 4-byte big-endian size, then that many bytes: a request header and
//! body. Requests on one connection are handled one at a time and answered in order (Kafka's
//! rule; a long-polling Fetch holds its connection, as in Kafka). A frame that is too large or
//! too small, an API or version not in [`crate::versions`] (ApiVersions excepted: it answers
//! UNSUPPORTED_VERSION with the list), or a body that does not decode closes that connection
//! with a log line; other connections carry on.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::Config;
use crate::group::{Coordinator, JoinRequest};
use crate::store::{Committed, Partition, Store, Topic, valid_topic_name};
use crate::versions;

/// One topic of a Fetch: its name, the topic if it exists, the partitions asked for.
type FetchTarget = (
    TopicName,
    Option<Arc<Topic>>,
    Vec<fetch_request::FetchPartition>,
);

/// Why a connection is closed.
#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    #[error("frame of {0} bytes is outside 8..={1}")]
    FrameSize(i64, usize),
    #[error("unknown API key {0}")]
    UnknownApi(i16),
    #[error("API {0:?} is not implemented")]
    Unimplemented(ApiKey),
    #[error("{0:?} version {1} is not supported ({2}..={3})")]
    UnsupportedVersion(ApiKey, i16, i16, i16),
    #[error("malformed {what}: {reason}")]
    Malformed { what: String, reason: String },
    #[error("encoding the {0:?} response: {1}")]
    Encode(ApiKey, String),
    #[error("connection: {0}")]
    Io(#[from] std::io::Error),
}

/// The broker: storage, group coordinator, configuration.
#[derive(Debug)]
pub struct Broker {
    config: Config,
    advertised: (String, i32),
    store: Store,
    groups: Coordinator,
}

fn s(v: impl Into<String>) -> StrBytes {
    StrBytes::from_string(v.into())
}

fn topic_name(v: &str) -> TopicName {
    TopicName(s(v))
}

fn decode<T: Decodable>(buf: &mut Bytes, version: i16, what: &str) -> Result<T, ConnError> {
    // The codecs return errors for short input; a panic on hostile input is caught here too.
    match std::panic::catch_unwind(AssertUnwindSafe(|| T::decode(buf, version))) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(ConnError::Malformed {
            what: what.to_string(),
            reason: e.to_string(),
        }),
        Err(_) => Err(ConnError::Malformed {
            what: what.to_string(),
            reason: "the decoder panicked".into(),
        }),
    }
}

/// A response frame: size, header, body.
fn frame<R: Encodable>(
    key: ApiKey,
    version: i16,
    header_version: i16,
    correlation_id: i32,
    body: &R,
) -> Result<Bytes, ConnError> {
    let mut buf = BytesMut::with_capacity(256);
    buf.put_i32(0);
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    header
        .encode(&mut buf, header_version)
        .and_then(|_| body.encode(&mut buf, version))
        .map_err(|e| ConnError::Encode(key, e.to_string()))?;
    let len = (buf.len() - 4) as i32;
    buf[0..4].copy_from_slice(&len.to_be_bytes());
    Ok(buf.freeze())
}

impl Broker {
    pub fn new(config: Config, advertised: (String, i32), store: Store) -> Broker {
        let delay = Duration::from_millis(config.group_initial_rebalance_delay_ms);
        Broker {
            config,
            advertised,
            store,
            groups: Coordinator::new(delay),
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn groups(&self) -> &Coordinator {
        &self.groups
    }

    /// Serves one client connection until it closes or sends something unacceptable.
    pub async fn serve_connection(self: Arc<Self>, stream: TcpStream, peer: SocketAddr) {
        let _ = stream.set_nodelay(true);
        tracing::debug!(%peer, "connection opened");
        match self.connection_loop(stream, peer).await {
            Ok(()) => tracing::debug!(%peer, "connection closed by the client"),
            Err(ConnError::Io(e)) => tracing::debug!(%peer, error = %e, "connection ended"),
            Err(e) => tracing::warn!(%peer, error = %e, "closing the connection"),
        }
    }

    async fn connection_loop(
        &self,
        mut stream: TcpStream,
        peer: SocketAddr,
    ) -> Result<(), ConnError> {
        let max = self.config.max_request_bytes;
        loop {
            let mut size = [0u8; 4];
            match stream.read_exact(&mut size).await {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
                Err(e) => return Err(e.into()),
            }
            let size = i32::from_be_bytes(size);
            if size < 8 || size as usize > max {
                return Err(ConnError::FrameSize(size.into(), max));
            }
            let mut body = BytesMut::zeroed(size as usize);
            stream.read_exact(&mut body).await?;
            if let Some(response) = self.handle(body.freeze(), peer).await? {
                stream.write_all(&response).await?;
            }
        }
    }

    /// Handles one request frame (without its size); `None` when no response is due (acks=0).
    pub async fn handle(
        &self,
        mut frame: Bytes,
        peer: SocketAddr,
    ) -> Result<Option<Bytes>, ConnError> {
        if frame.len() < 8 {
            return Err(ConnError::FrameSize(
                frame.len() as i64,
                self.config.max_request_bytes,
            ));
        }
        let api_key = i16::from_be_bytes([frame[0], frame[1]]);
        let version = i16::from_be_bytes([frame[2], frame[3]]);
        let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
        let key = ApiKey::try_from(api_key).map_err(|_| ConnError::UnknownApi(api_key))?;
        let (lo, hi) = versions::range(key).ok_or(ConnError::Unimplemented(key))?;
        if version < lo || version > hi {
            if key == ApiKey::ApiVersions {
                // KIP-511: answer in v0 with the error and the supported versions.
                let mut body = self.api_versions();
                body.error_code = ResponseError::UnsupportedVersion.code();
                return frame_opt(ApiKey::ApiVersions, 0, 0, correlation_id, &body);
            }
            return Err(ConnError::UnsupportedVersion(key, version, lo, hi));
        }
        let header: RequestHeader = decode(
            &mut frame,
            key.request_header_version(version),
            "request header",
        )?;
        let client_id = header
            .client_id
            .as_ref()
            .map(|c| c.to_string())
            .unwrap_or_default();
        let hv = key.response_header_version(version);
        let what = format!("{key:?} v{version} request");
        tracing::trace!(%peer, ?key, version, correlation_id, "request");
        macro_rules! reply {
            ($body:expr) => {
                frame_opt(key, version, hv, correlation_id, &$body)
            };
        }
        match key {
            ApiKey::ApiVersions => {
                let _: ApiVersionsRequest = decode(&mut frame, version, &what)?;
                reply!(self.api_versions())
            }
            ApiKey::Metadata => {
                let req = decode(&mut frame, version, &what)?;
                reply!(self.metadata(req, version))
            }
            ApiKey::CreateTopics => {
                let req = decode(&mut frame, version, &what)?;
                reply!(self.create_topics(req))
            }
            ApiKey::DeleteTopics => {
                let req = decode(&mut frame, version, &what)?;
                reply!(self.delete_topics(req))
            }
            ApiKey::InitProducerId => {
                let req = decode(&mut frame, version, &what)?;
                reply!(self.init_producer_id(req))
            }
            ApiKey::Produce => {
                let req: ProduceRequest = decode(&mut frame, version, &what)?;
                let acks = req.acks;
                let body = self.produce(req, version);
                if acks == 0 { Ok(None) } else { reply!(body) }
            }
            ApiKey::Fetch => {
                let req = decode(&mut frame, version, &what)?;
                reply!(self.fetch(req).await)
            }
            ApiKey::ListOffsets => {
                let req = decode(&mut frame, version, &what)?;
                reply!(self.list_offsets(req, version))
            }
            ApiKey::FindCoordinator => {
                let req = decode(&mut frame, version, &what)?;
                reply!(self.find_coordinator(req))
            }
            ApiKey::JoinGroup => {
                let req = decode(&mut frame, version, &what)?;
                reply!(self.join_group(req, version, client_id, peer).await)
            }
            ApiKey::SyncGroup => {
                let req = decode(&mut frame, version, &what)?;
                reply!(self.sync_group(req).await)
            }
            ApiKey::Heartbeat => {
                let req: HeartbeatRequest = decode(&mut frame, version, &what)?;
                let error = self
                    .groups
                    .heartbeat(&req.group_id, req.generation_id, &req.member_id);
                reply!(HeartbeatResponse::default().with_error_code(code(error)))
            }
            ApiKey::LeaveGroup => {
                let req = decode(&mut frame, version, &what)?;
                reply!(self.leave_group(req, version))
            }
            ApiKey::OffsetCommit => {
                let req = decode(&mut frame, version, &what)?;
                reply!(self.offset_commit(req))
            }
            ApiKey::OffsetFetch => {
                let req = decode(&mut frame, version, &what)?;
                reply!(self.offset_fetch(req))
            }
            ApiKey::ListGroups => {
                let req = decode(&mut frame, version, &what)?;
                reply!(self.list_groups(req))
            }
            ApiKey::DescribeGroups => {
                let req = decode(&mut frame, version, &what)?;
                reply!(self.describe_groups(req))
            }
            other => Err(ConnError::Unimplemented(other)),
        }
    }

    fn api_versions(&self) -> ApiVersionsResponse {
        ApiVersionsResponse::default().with_api_keys(
            versions::SUPPORTED
                .iter()
                .map(|(k, lo, hi)| {
                    api_versions_response::ApiVersion::default()
                        .with_api_key(*k as i16)
                        .with_min_version(*lo)
                        .with_max_version(*hi)
                })
                .collect(),
        )
    }

    fn broker_id(&self) -> BrokerId {
        BrokerId(self.config.node_id)
    }

    fn auto_create(&self, name: &str) -> Result<Option<Arc<Topic>>, ResponseError> {
        if !valid_topic_name(name) {
            return Err(ResponseError::InvalidTopicException);
        }
        match self
            .store
            .create_topic(name, self.config.default_partitions)
        {
            Ok(Some(t)) => Ok(Some(t)),
            Ok(None) => Ok(self.store.topic(name)),
            Err(e) => {
                tracing::error!(topic = name, error = %e, "auto-creating a topic failed");
                Err(ResponseError::KafkaStorageError)
            }
        }
    }

    fn metadata(&self, req: MetadataRequest, version: i16) -> MetadataResponse {
        let node = self.broker_id();
        let all = match &req.topics {
            None => true,
            Some(t) => version == 0 && t.is_empty(),
        };
        let allow_create =
            self.config.auto_create_topics && (version < 4 || req.allow_auto_topic_creation);
        let describe = |t: &Topic| {
            metadata_response::MetadataResponseTopic::default()
                .with_name(Some(topic_name(&t.name)))
                .with_topic_id(t.id)
                .with_partitions(
                    t.partitions
                        .iter()
                        .map(|p| {
                            metadata_response::MetadataResponsePartition::default()
                                .with_partition_index(p.index)
                                .with_leader_id(node)
                                .with_leader_epoch(0)
                                .with_replica_nodes(vec![node])
                                .with_isr_nodes(vec![node])
                        })
                        .collect(),
                )
        };
        let topics = if all {
            self.store.topics().iter().map(|t| describe(t)).collect()
        } else {
            req.topics
                .unwrap_or_default()
                .into_iter()
                .filter_map(|t| t.name)
                .map(|name| {
                    let found = match self.store.topic(&name) {
                        Some(t) => Ok(Some(t)),
                        None if allow_create => self.auto_create(&name),
                        None => Ok(None),
                    };
                    match found {
                        Ok(Some(t)) => describe(&t),
                        Ok(None) => metadata_response::MetadataResponseTopic::default()
                            .with_name(Some(name))
                            .with_error_code(ResponseError::UnknownTopicOrPartition.code()),
                        Err(e) => metadata_response::MetadataResponseTopic::default()
                            .with_name(Some(name))
                            .with_error_code(e.code()),
                    }
                })
                .collect()
        };
        MetadataResponse::default()
            .with_brokers(vec![
                metadata_response::MetadataResponseBroker::default()
                    .with_node_id(node)
                    .with_host(s(self.advertised.0.clone()))
                    .with_port(self.advertised.1),
            ])
            .with_cluster_id(Some(s(self.config.cluster_id.clone())))
            .with_controller_id(node)
            .with_topics(topics)
    }

    fn create_topics(&self, req: CreateTopicsRequest) -> CreateTopicsResponse {
        let topics = req
            .topics
            .into_iter()
            .map(|t| {
                let partitions = if t.num_partitions == -1 {
                    self.config.default_partitions
                } else {
                    t.num_partitions
                };
                let result = create_topics_response::CreatableTopicResult::default()
                    .with_name(t.name.clone())
                    .with_num_partitions(partitions)
                    .with_replication_factor(1)
                    .with_configs(Some(Vec::new()));
                let error = if !valid_topic_name(&t.name) {
                    Some(ResponseError::InvalidTopicException)
                } else if !(1..=10_000).contains(&partitions) {
                    Some(ResponseError::InvalidPartitions)
                } else if !matches!(t.replication_factor, -1 | 1) {
                    Some(ResponseError::InvalidReplicationFactor)
                } else if !t.assignments.is_empty() {
                    Some(ResponseError::InvalidReplicaAssignment)
                } else if self.store.topic(&t.name).is_some() {
                    Some(ResponseError::TopicAlreadyExists)
                } else if req.validate_only {
                    None
                } else {
                    match self.store.create_topic(&t.name, partitions) {
                        Ok(Some(_)) => None,
                        Ok(None) => Some(ResponseError::TopicAlreadyExists),
                        Err(e) => {
                            tracing::error!(topic = %t.name.as_str(), error = %e, "creating a topic failed");
                            Some(ResponseError::KafkaStorageError)
                        }
                    }
                };
                match error {
                    None => result,
                    Some(e) => result
                        .with_error_code(e.code())
                        .with_error_message(Some(s(e.to_string())))
                        .with_num_partitions(-1)
                        .with_replication_factor(-1)
                        .with_configs(None),
                }
            })
            .collect();
        CreateTopicsResponse::default().with_topics(topics)
    }

    fn delete_topics(&self, req: DeleteTopicsRequest) -> DeleteTopicsResponse {
        let responses = req
            .topic_names
            .into_iter()
            .map(|name| {
                let error = match self.store.delete_topic(&name) {
                    Ok(true) => 0,
                    Ok(false) => ResponseError::UnknownTopicOrPartition.code(),
                    Err(e) => {
                        tracing::error!(topic = %name.as_str(), error = %e, "deleting a topic failed");
                        ResponseError::KafkaStorageError.code()
                    }
                };
                delete_topics_response::DeletableTopicResult::default()
                    .with_name(Some(name))
                    .with_error_code(error)
            })
            .collect();
        DeleteTopicsResponse::default().with_responses(responses)
    }

    fn init_producer_id(&self, req: InitProducerIdRequest) -> InitProducerIdResponse {
        if req.transactional_id.as_ref().is_some_and(|t| !t.is_empty()) {
            // Transactions are not implemented: a clear, non-retriable refusal.
            return InitProducerIdResponse::default()
                .with_error_code(ResponseError::TransactionalIdAuthorizationFailed.code())
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1);
        }
        let (id, epoch) = if req.producer_id.0 >= 0
            && req.producer_epoch >= 0
            && req.producer_epoch < i16::MAX - 1
        {
            // KIP-360: a producer bumps its epoch after an error.
            (req.producer_id.0, req.producer_epoch + 1)
        } else {
            (self.store.new_producer_id(), 0)
        };
        InitProducerIdResponse::default()
            .with_producer_id(ProducerId(id))
            .with_producer_epoch(epoch)
    }

    fn produce(&self, req: ProduceRequest, version: i16) -> ProduceResponse {
        let transactional = req.transactional_id.as_ref().is_some_and(|t| !t.is_empty());
        let responses = req
            .topic_data
            .into_iter()
            .map(|t| {
                let topic = self.store.topic(&t.name);
                let partition_responses = t
                    .partition_data
                    .into_iter()
                    .map(|p| {
                        let resp = produce_response::PartitionProduceResponse::default()
                            .with_index(p.index)
                            .with_base_offset(-1)
                            .with_log_append_time_ms(-1)
                            .with_log_start_offset(-1);
                        let partition = topic.as_ref().and_then(|t| {
                            usize::try_from(p.index)
                                .ok()
                                .and_then(|i| t.partitions.get(i))
                        });
                        let result = match (partition, p.records) {
                            _ if transactional => {
                                Err(ResponseError::TransactionalIdAuthorizationFailed)
                            }
                            (None, _) => Err(ResponseError::UnknownTopicOrPartition),
                            (Some(_), None) => Err(ResponseError::InvalidRecord),
                            (Some(part), Some(records)) => self
                                .store
                                .append(part, &records)
                                .map(|offset| (offset, part.state.lock().log.start_offset())),
                        };
                        match result {
                            Ok((offset, start)) => resp
                                .with_base_offset(offset)
                                .with_log_start_offset(if version >= 5 { start } else { -1 }),
                            Err(e) => resp.with_error_code(e.code()),
                        }
                    })
                    .collect();
                produce_response::TopicProduceResponse::default()
                    .with_name(t.name)
                    .with_partition_responses(partition_responses)
            })
            .collect();
        ProduceResponse::default().with_responses(responses)
    }

    /// Reads every requested partition once: the response and how many record bytes it holds.
    /// An error in any partition (unknown, out of range) answers at once.
    fn read_fetch(
        &self,
        targets: &[FetchTarget],
        max_bytes: usize,
    ) -> (FetchResponse, usize, bool) {
        let mut remaining = max_bytes;
        let mut total = 0usize;
        let mut errored = false;
        let responses = targets
            .iter()
            .map(|(name, topic, parts)| {
                let partitions = parts
                    .iter()
                    .map(|fp| {
                        let data = fetch_response::PartitionData::default()
                            .with_partition_index(fp.partition)
                            .with_high_watermark(-1)
                            .with_last_stable_offset(-1)
                            .with_log_start_offset(-1);
                        let Some(part) = topic.as_ref().and_then(|t| {
                            usize::try_from(fp.partition)
                                .ok()
                                .and_then(|i| t.partitions.get(i))
                        }) else {
                            errored = true;
                            return data
                                .with_error_code(ResponseError::UnknownTopicOrPartition.code());
                        };
                        let limit = (fp.partition_max_bytes.max(0) as usize).min(remaining);
                        match Store::read(part, fp.fetch_offset, limit.max(1)) {
                            Ok((records, hw, start)) => {
                                let data = data
                                    .with_high_watermark(hw)
                                    .with_last_stable_offset(hw)
                                    .with_log_start_offset(start);
                                if fp.fetch_offset < start || fp.fetch_offset > hw {
                                    errored = true;
                                    return data
                                        .with_error_code(ResponseError::OffsetOutOfRange.code());
                                }
                                // Past the first data, only what fits the limits.
                                let records = if total > 0 && records.len() > limit {
                                    Bytes::new()
                                } else {
                                    records
                                };
                                total += records.len();
                                remaining = remaining.saturating_sub(records.len());
                                data.with_records(Some(records))
                            }
                            Err(e) => {
                                tracing::error!(error = %e, "reading a partition failed");
                                errored = true;
                                data.with_error_code(ResponseError::KafkaStorageError.code())
                            }
                        }
                    })
                    .collect();
                fetch_response::FetchableTopicResponse::default()
                    .with_topic(name.clone())
                    .with_partitions(partitions)
            })
            .collect();
        (
            FetchResponse::default().with_responses(responses),
            total,
            errored,
        )
    }

    /// Fetch as a long poll: answered as soon as `min_bytes` are there (woken by appends to the
    /// requested partitions), else at `max_wait_ms`.
    async fn fetch(&self, req: FetchRequest) -> FetchResponse {
        let wait = Duration::from_millis(req.max_wait_ms.clamp(0, 300_000) as u64);
        let deadline = tokio::time::Instant::now() + wait;
        let max_bytes = if req.max_bytes <= 0 {
            usize::MAX
        } else {
            req.max_bytes as usize
        };
        let min_bytes = req.min_bytes.max(0) as usize;
        let targets: Vec<_> = req
            .topics
            .into_iter()
            .map(|t| {
                let topic = self.store.topic(&t.topic);
                (t.topic, topic, t.partitions)
            })
            .collect();
        let watched: Vec<Arc<Partition>> = targets
            .iter()
            .flat_map(|(_, topic, parts)| {
                parts.iter().filter_map(move |fp| {
                    topic.as_ref().and_then(|t| {
                        usize::try_from(fp.partition)
                            .ok()
                            .and_then(|i| t.partitions.get(i).cloned())
                    })
                })
            })
            .collect();
        loop {
            // Register for wake-ups before looking, so an append in between is not missed.
            let mut woken: Vec<Pin<Box<tokio::sync::futures::Notified<'_>>>> = watched
                .iter()
                .map(|p| Box::pin(p.appended.notified()))
                .collect();
            for n in &mut woken {
                n.as_mut().enable();
            }
            let (response, bytes, errored) = self.read_fetch(&targets, max_bytes);
            if errored
                || bytes >= min_bytes.max(1)
                || min_bytes == 0
                || tokio::time::Instant::now() >= deadline
                || woken.is_empty()
            {
                return response;
            }
            tokio::select! {
                _ = futures::future::select_all(woken) => {}
                _ = tokio::time::sleep_until(deadline) => {}
            }
        }
    }

    fn list_offsets(&self, req: ListOffsetsRequest, version: i16) -> ListOffsetsResponse {
        let topics = req
            .topics
            .into_iter()
            .map(|t| {
                let topic = self.store.topic(&t.name);
                let partitions = t
                    .partitions
                    .into_iter()
                    .map(|p| {
                        let resp = list_offsets_response::ListOffsetsPartitionResponse::default()
                            .with_partition_index(p.partition_index)
                            .with_timestamp(-1)
                            .with_offset(-1)
                            .with_leader_epoch(if version >= 4 { 0 } else { -1 });
                        let Some(part) = topic.as_ref().and_then(|t| {
                            usize::try_from(p.partition_index)
                                .ok()
                                .and_then(|i| t.partitions.get(i))
                        }) else {
                            return resp
                                .with_error_code(ResponseError::UnknownTopicOrPartition.code());
                        };
                        let state = part.state.lock();
                        let offset = match p.timestamp {
                            -2 => Ok(state.log.start_offset()),
                            -1 | -3 => Ok(state.log.next_offset()),
                            ts => state
                                .log
                                .offset_for_timestamp(ts)
                                .map(|o| o.unwrap_or_else(|| state.log.next_offset())),
                        };
                        match offset {
                            Ok(o) => resp.with_offset(o),
                            Err(e) => {
                                tracing::error!(error = %e, "reading offsets failed");
                                resp.with_error_code(ResponseError::KafkaStorageError.code())
                            }
                        }
                    })
                    .collect();
                list_offsets_response::ListOffsetsTopicResponse::default()
                    .with_name(t.name)
                    .with_partitions(partitions)
            })
            .collect();
        ListOffsetsResponse::default().with_topics(topics)
    }

    fn find_coordinator(&self, _req: FindCoordinatorRequest) -> FindCoordinatorResponse {
        FindCoordinatorResponse::default()
            .with_node_id(self.broker_id())
            .with_host(s(self.advertised.0.clone()))
            .with_port(self.advertised.1)
    }

    async fn join_group(
        &self,
        req: JoinGroupRequest,
        version: i16,
        client_id: String,
        peer: SocketAddr,
    ) -> JoinGroupResponse {
        let session = Duration::from_millis(req.session_timeout_ms.max(0) as u64);
        let rebalance = if version >= 1 {
            Duration::from_millis(req.rebalance_timeout_ms.max(0) as u64)
        } else {
            session
        };
        let member_id = req.member_id.to_string();
        let join = JoinRequest {
            group_id: req.group_id.to_string(),
            member_id: member_id.clone(),
            group_instance_id: req.group_instance_id.map(|i| i.to_string()),
            client_id,
            client_host: format!("/{}", peer.ip()),
            session_timeout: session,
            rebalance_timeout: rebalance,
            protocol_type: req.protocol_type.to_string(),
            protocols: req
                .protocols
                .into_iter()
                .map(|p| (p.name.to_string(), p.metadata))
                .collect(),
            require_known_member_id: version >= 4,
        };
        let result = match self.groups.join(join) {
            Err(now) => now,
            Ok(rx) => match rx.await {
                Ok(r) => r,
                Err(_) => crate::group::JoinResult {
                    error: ResponseError::UnknownMemberId.code(),
                    generation: -1,
                    protocol_type: None,
                    protocol_name: None,
                    leader: String::new(),
                    member_id,
                    members: Vec::new(),
                },
            },
        };
        JoinGroupResponse::default()
            .with_error_code(result.error)
            .with_generation_id(result.generation)
            .with_protocol_type(result.protocol_type.map(s))
            .with_protocol_name(Some(s(result.protocol_name.unwrap_or_default())))
            .with_leader(s(result.leader))
            .with_member_id(s(result.member_id))
            .with_members(
                result
                    .members
                    .into_iter()
                    .map(|(id, instance, metadata)| {
                        join_group_response::JoinGroupResponseMember::default()
                            .with_member_id(s(id))
                            .with_group_instance_id(instance.map(s))
                            .with_metadata(metadata)
                    })
                    .collect(),
            )
    }

    async fn sync_group(&self, req: SyncGroupRequest) -> SyncGroupResponse {
        let assignments = req
            .assignments
            .into_iter()
            .map(|a| (a.member_id.to_string(), a.assignment))
            .collect();
        let result = match self.groups.sync(
            &req.group_id,
            req.generation_id,
            &req.member_id,
            assignments,
        ) {
            Err(now) => now,
            Ok(rx) => rx.await.unwrap_or(crate::group::SyncResult {
                error: ResponseError::RebalanceInProgress.code(),
                protocol_type: None,
                protocol_name: None,
                assignment: Bytes::new(),
            }),
        };
        SyncGroupResponse::default()
            .with_error_code(result.error)
            .with_protocol_type(result.protocol_type.map(s))
            .with_protocol_name(result.protocol_name.map(s))
            .with_assignment(result.assignment)
    }

    fn leave_group(&self, req: LeaveGroupRequest, version: i16) -> LeaveGroupResponse {
        if version < 3 {
            let errors = self
                .groups
                .leave(&req.group_id, &[req.member_id.to_string()]);
            return LeaveGroupResponse::default()
                .with_error_code(code(errors.into_iter().next().flatten()));
        }
        let ids: Vec<String> = req
            .members
            .iter()
            .map(|m| m.member_id.to_string())
            .collect();
        let errors = self.groups.leave(&req.group_id, &ids);
        LeaveGroupResponse::default().with_members(
            req.members
                .into_iter()
                .zip(errors)
                .map(|(m, e)| {
                    leave_group_response::MemberResponse::default()
                        .with_member_id(m.member_id)
                        .with_group_instance_id(m.group_instance_id)
                        .with_error_code(code(e))
                })
                .collect(),
        )
    }

    fn offset_commit(&self, req: OffsetCommitRequest) -> OffsetCommitResponse {
        let refused = self.groups.check_commit(
            &req.group_id,
            req.generation_id_or_member_epoch,
            &req.member_id,
        );
        let mut commits = Vec::new();
        let topics = req
            .topics
            .into_iter()
            .map(|t| {
                let topic = self.store.topic(&t.name);
                let partitions = t
                    .partitions
                    .into_iter()
                    .map(|p| {
                        let exists = topic.as_ref().is_some_and(|t| {
                            p.partition_index >= 0
                                && (p.partition_index as usize) < t.partitions.len()
                        });
                        let error = if let Some(e) = refused {
                            Some(e)
                        } else if !exists {
                            Some(ResponseError::UnknownTopicOrPartition)
                        } else {
                            commits.push((
                                t.name.to_string(),
                                p.partition_index,
                                Committed {
                                    offset: p.committed_offset,
                                    metadata: p.committed_metadata.map(|m| m.to_string()),
                                },
                            ));
                            None
                        };
                        offset_commit_response::OffsetCommitResponsePartition::default()
                            .with_partition_index(p.partition_index)
                            .with_error_code(code(error))
                    })
                    .collect::<Vec<_>>();
                (t.name, partitions)
            })
            .collect::<Vec<_>>();
        let stored = commits.is_empty()
            || {
                match self.store.commit(&req.group_id, &commits) {
                    Ok(()) => true,
                    Err(e) => {
                        tracing::error!(group = %req.group_id.as_str(), error = %e, "storing committed offsets failed");
                        false
                    }
                }
            };
        OffsetCommitResponse::default().with_topics(
            topics
                .into_iter()
                .map(|(name, mut partitions)| {
                    if !stored {
                        for p in &mut partitions {
                            if p.error_code == 0 {
                                p.error_code = ResponseError::KafkaStorageError.code();
                            }
                        }
                    }
                    offset_commit_response::OffsetCommitResponseTopic::default()
                        .with_name(name)
                        .with_partitions(partitions)
                })
                .collect(),
        )
    }

    fn offset_fetch(&self, req: OffsetFetchRequest) -> OffsetFetchResponse {
        let group = req.group_id.to_string();
        let wanted: Vec<(String, Vec<i32>)> = match req.topics {
            Some(topics) => topics
                .into_iter()
                .map(|t| (t.name.to_string(), t.partition_indexes))
                .collect(),
            None => self
                .store
                .committed_all(&group)
                .into_iter()
                .map(|(t, parts)| (t, parts.into_keys().collect()))
                .collect(),
        };
        let topics = wanted
            .into_iter()
            .map(|(name, parts)| {
                let partitions = parts
                    .into_iter()
                    .map(|p| {
                        let c = self.store.committed(&group, &name, p);
                        offset_fetch_response::OffsetFetchResponsePartition::default()
                            .with_partition_index(p)
                            .with_committed_offset(c.as_ref().map_or(-1, |c| c.offset))
                            .with_metadata(Some(s(c.and_then(|c| c.metadata).unwrap_or_default())))
                    })
                    .collect();
                offset_fetch_response::OffsetFetchResponseTopic::default()
                    .with_name(topic_name(&name))
                    .with_partitions(partitions)
            })
            .collect();
        OffsetFetchResponse::default().with_topics(topics)
    }

    fn list_groups(&self, req: ListGroupsRequest) -> ListGroupsResponse {
        let mut groups: BTreeMap<String, (String, &'static str)> = self
            .store
            .groups_with_offsets()
            .into_iter()
            .map(|g| (g, ("consumer".to_string(), "Empty")))
            .collect();
        for (id, protocol_type, state) in self.groups.list() {
            let protocol_type = if protocol_type.is_empty() {
                "consumer".to_string()
            } else {
                protocol_type
            };
            groups.insert(id, (protocol_type, state.name()));
        }
        let filter: Vec<String> = req
            .states_filter
            .iter()
            .map(|s| s.to_ascii_lowercase())
            .collect();
        ListGroupsResponse::default().with_groups(
            groups
                .into_iter()
                .filter(|(_, (_, state))| {
                    filter.is_empty() || filter.contains(&state.to_ascii_lowercase())
                })
                .map(|(id, (protocol_type, state))| {
                    list_groups_response::ListedGroup::default()
                        .with_group_id(GroupId(s(id)))
                        .with_protocol_type(s(protocol_type))
                        .with_group_state(s(state))
                })
                .collect(),
        )
    }

    fn describe_groups(&self, req: DescribeGroupsRequest) -> DescribeGroupsResponse {
        let known = self.store.groups_with_offsets();
        DescribeGroupsResponse::default().with_groups(
            req.groups
                .into_iter()
                .map(|id| {
                    let described = describe_groups_response::DescribedGroup::default()
                        .with_group_id(id.clone());
                    match self.groups.describe(&id) {
                        Some(d) => described
                            .with_group_state(s(d.state.name()))
                            .with_protocol_type(s(d.protocol_type))
                            .with_protocol_data(s(d.protocol))
                            .with_members(
                                d.members
                                    .into_iter()
                                    .map(|m| {
                                        describe_groups_response::DescribedGroupMember::default()
                                            .with_member_id(s(m.member_id))
                                            .with_group_instance_id(m.group_instance_id.map(s))
                                            .with_client_id(s(m.client_id))
                                            .with_client_host(s(m.client_host))
                                            .with_member_metadata(m.metadata)
                                            .with_member_assignment(m.assignment)
                                    })
                                    .collect(),
                            ),
                        None if known.iter().any(|g| g.as_str() == id.as_str()) => described
                            .with_group_state(s("Empty"))
                            .with_protocol_type(s("consumer")),
                        None => described.with_group_state(s("Dead")),
                    }
                })
                .collect(),
        )
    }
}

fn code(error: Option<ResponseError>) -> i16 {
    error.map_or(0, |e| e.code())
}

fn frame_opt<R: Encodable>(
    key: ApiKey,
    version: i16,
    header_version: i16,
    correlation_id: i32,
    body: &R,
) -> Result<Option<Bytes>, ConnError> {
    frame(key, version, header_version, correlation_id, body).map(Some)
}
