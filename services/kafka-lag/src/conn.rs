//! One TCP connection to the broker: Kafka's size-prefixed frames, request headers with
//! correlation ids, and the version of each API agreed once through `ApiVersions`.
//!
//! Requests go one at a time (the caller holds the connection's lock), so the only answer on
//! the wire is the one awaited; a request that times out or fails leaves the connection in an
//! unknown state, and the caller drops it ([`crate::BrokerClient`] reconnects on next use).

use std::collections::HashMap;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Message, StrBytes};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::error::{LagError, code_name};

/// A request this crate can send: its API key and the answer's type. (kafka-protocol's own
/// `Request` trait needs its `broker` feature, which would compile every server-side codec.)
pub trait Api: Message + Encodable + HeaderVersion {
    const KEY: ApiKey;
    type Response: Decodable + HeaderVersion;
}

macro_rules! apis {
    ($($req:ident => $resp:ident, $key:ident;)*) => {$(
        impl Api for kafka_protocol::messages::$req {
            const KEY: ApiKey = ApiKey::$key;
            type Response = kafka_protocol::messages::$resp;
        }
    )*};
}

apis! {
    ApiVersionsRequest => ApiVersionsResponse, ApiVersions;
    MetadataRequest => MetadataResponse, Metadata;
    ListOffsetsRequest => ListOffsetsResponse, ListOffsets;
    OffsetFetchRequest => OffsetFetchResponse, OffsetFetch;
    ListGroupsRequest => ListGroupsResponse, ListGroups;
    DescribeGroupsRequest => DescribeGroupsResponse, DescribeGroups;
    FindCoordinatorRequest => FindCoordinatorResponse, FindCoordinator;
    JoinGroupRequest => JoinGroupResponse, JoinGroup;
    SyncGroupRequest => SyncGroupResponse, SyncGroup;
    HeartbeatRequest => HeartbeatResponse, Heartbeat;
    LeaveGroupRequest => LeaveGroupResponse, LeaveGroup;
    OffsetCommitRequest => OffsetCommitResponse, OffsetCommit;
}

/// Largest answer accepted: metadata of a few thousand topics fits many times over; a
/// length beyond it means the stream is not Kafka (or is corrupt).
const MAX_FRAME: usize = 64 * 1024 * 1024;

/// The `UNSUPPORTED_VERSION` error code.
const UNSUPPORTED_VERSION: i16 = 35;

/// A connected, version-negotiated link to one broker.
#[derive(Debug)]
pub(crate) struct Conn {
    stream: TcpStream,
    addr: String,
    client_id: StrBytes,
    next_correlation: i32,
    /// The broker's version range per API key, from `ApiVersions`.
    versions: HashMap<i16, (i16, i16)>,
}

impl Conn {
    /// Connects to `addr` within `connect_timeout` and asks the broker which API versions it
    /// speaks (within `request_timeout`).
    pub(crate) async fn open(
        addr: &str,
        client_id: &str,
        connect_timeout: Duration,
        request_timeout: Duration,
    ) -> Result<Conn, LagError> {
        let stream = match tokio::time::timeout(connect_timeout, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => s,
            Ok(Err(source)) => {
                return Err(LagError::Connect {
                    addr: addr.to_string(),
                    source,
                });
            }
            Err(_) => {
                return Err(LagError::Timeout {
                    what: "connecting".into(),
                    addr: addr.to_string(),
                    after: connect_timeout,
                });
            }
        };
        // Small request/response exchanges: do not wait for Nagle.
        let _ = stream.set_nodelay(true);
        let mut conn = Conn {
            stream,
            addr: addr.to_string(),
            client_id: StrBytes::from_string(client_id.to_string()),
            next_correlation: 1,
            versions: HashMap::new(),
        };
        let what = "ApiVersions";
        let request = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("platform-kafka-lag"))
            .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
        // v3 is what current brokers expect; one that does not know it answers
        // UNSUPPORTED_VERSION in a v0 body, and v0 then works everywhere.
        let mut answer = conn
            .exchange_timed(what, &request, 3, request_timeout)
            .await?;
        if answer.error_code == UNSUPPORTED_VERSION {
            answer = conn
                .exchange_timed(what, &request, 0, request_timeout)
                .await?;
        }
        if answer.error_code != 0 {
            return Err(conn.broker_error(what, answer.error_code));
        }
        conn.versions = answer
            .api_keys
            .iter()
            .map(|k| (k.api_key, (k.min_version, k.max_version)))
            .collect();
        Ok(conn)
    }

    /// The highest version of `R` both sides speak, at most `cap` (the newest version whose
    /// fields the caller reads).
    pub(crate) fn version<R: Api>(&self, cap: i16) -> Result<i16, LagError> {
        let ours = (R::VERSIONS.min, R::VERSIONS.max.min(cap));
        let api = R::KEY;
        let unsupported = |broker: String| LagError::Unsupported {
            addr: self.addr.clone(),
            api: format!("{api:?}"),
            broker,
            client: format!("{}..{}", ours.0, ours.1),
        };
        let Some(&(min, max)) = self.versions.get(&(R::KEY as i16)) else {
            return Err(unsupported("none".into()));
        };
        let version = max.min(ours.1);
        if version < min.max(ours.0) {
            return Err(unsupported(format!("{min}..{max}")));
        }
        Ok(version)
    }

    /// Sends `request` at the best version up to `cap`; returns that version and the answer.
    pub(crate) async fn call<R: Api>(
        &mut self,
        what: &str,
        request: &R,
        cap: i16,
        timeout: Duration,
    ) -> Result<(i16, R::Response), LagError> {
        let version = self.version::<R>(cap)?;
        let answer = self.exchange_timed(what, request, version, timeout).await?;
        Ok((version, answer))
    }

    /// [`Conn::exchange`] bounded by `timeout`.
    async fn exchange_timed<R: Api>(
        &mut self,
        what: &str,
        request: &R,
        version: i16,
        timeout: Duration,
    ) -> Result<R::Response, LagError> {
        match tokio::time::timeout(timeout, self.exchange(what, request, version)).await {
            Ok(result) => result,
            Err(_) => Err(LagError::Timeout {
                what: what.to_string(),
                addr: self.addr.clone(),
                after: timeout,
            }),
        }
    }

    /// Writes one request frame and reads its answer.
    async fn exchange<R: Api>(
        &mut self,
        what: &str,
        request: &R,
        version: i16,
    ) -> Result<R::Response, LagError> {
        let correlation_id = self.next_correlation;
        self.next_correlation = self.next_correlation.wrapping_add(1);
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY as i16)
            .with_request_api_version(version)
            .with_correlation_id(correlation_id)
            .with_client_id(Some(self.client_id.clone()));
        let mut body = BytesMut::with_capacity(128);
        header
            .encode(&mut body, R::header_version(version))
            .and_then(|()| request.encode(&mut body, version))
            .map_err(|e| self.protocol(what, format!("encoding the request: {e}")))?;
        let mut frame = BytesMut::with_capacity(body.len() + 4);
        frame.put_i32(body.len() as i32);
        frame.extend_from_slice(&body);
        self.stream
            .write_all(&frame)
            .await
            .map_err(|source| self.io(what, source))?;

        let len = self
            .stream
            .read_i32()
            .await
            .map_err(|source| self.io(what, source))?;
        let len = usize::try_from(len)
            .ok()
            .filter(|n| *n >= 4 && *n <= MAX_FRAME)
            .ok_or_else(|| self.protocol(what, format!("answer length {len} out of range")))?;
        let mut answer = vec![0u8; len];
        self.stream
            .read_exact(&mut answer)
            .await
            .map_err(|source| self.io(what, source))?;
        let mut answer = Bytes::from(answer);
        let header = ResponseHeader::decode(&mut answer, R::Response::header_version(version))
            .map_err(|e| self.protocol(what, format!("response header: {e}")))?;
        if header.correlation_id != correlation_id {
            return Err(self.protocol(
                what,
                format!(
                    "answer to request {} arrived for request {correlation_id}",
                    header.correlation_id
                ),
            ));
        }
        R::Response::decode(&mut answer, version)
            .map_err(|e| self.protocol(what, format!("decoding the answer (v{version}): {e}")))
    }

    pub(crate) fn broker_error(&self, what: &str, code: i16) -> LagError {
        LagError::Broker {
            what: what.to_string(),
            addr: self.addr.clone(),
            code,
            name: code_name(code),
        }
    }

    fn protocol(&self, what: &str, message: String) -> LagError {
        LagError::Protocol {
            what: what.to_string(),
            addr: self.addr.clone(),
            message,
        }
    }

    fn io(&self, what: &str, source: std::io::Error) -> LagError {
        LagError::Io {
            what: what.to_string(),
            addr: self.addr.clone(),
            source,
        }
    }
}
