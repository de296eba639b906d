//! The confirmed services the gateway asks of a device, each a request
//! through [`Client::request`] and its answer decoded and checked against
//! what was asked. Apart from the client itself, which is the transport:
//! matching answers to requests, retries and segmentation.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::time::Instant;

use super::apdu::confirmed;
use super::client::{Client, ClientError};
use super::services::{self, PropertyRef, PropertyResult};
use super::tags::{property, ObjectId, Value};
use super::CodecError;

impl Client {
    /// ReadProperty: the property's values (one, or an array's elements).
    pub async fn read_property(
        &self,
        peer: SocketAddr,
        object: ObjectId,
        p: PropertyRef,
    ) -> Result<Vec<Value>, ClientError> {
        let body = self
            .request(
                peer,
                confirmed::READ_PROPERTY,
                &services::read_property(object, p),
            )
            .await?
            .ok_or(ClientError::Malformed(CodecError::Unexpected(
                "a ComplexACK",
            )))?;
        let (answered, property, values) =
            services::decode_read_property_ack(&body).map_err(ClientError::Malformed)?;
        // An answer filed under another object or property is not this
        // one's value, whatever it holds.
        if answered != object || property.property != p.property {
            return Err(ClientError::Mismatch(answered));
        }
        Ok(values)
    }

    /// ReadPropertyMultiple: each object's properties, values or errors.
    pub async fn read_property_multiple(
        &self,
        peer: SocketAddr,
        items: &[(ObjectId, Vec<PropertyRef>)],
    ) -> Result<Vec<(ObjectId, Vec<PropertyResult>)>, ClientError> {
        let body = self
            .request(
                peer,
                confirmed::READ_PROPERTY_MULTIPLE,
                &services::read_property_multiple(items),
            )
            .await?
            .ok_or(ClientError::Malformed(CodecError::Unexpected(
                "a ComplexACK",
            )))?;
        services::decode_rpm_ack(&body).map_err(ClientError::Malformed)
    }

    /// SubscribeCOV of `object` of device `instance` at `peer` for
    /// `lifetime` (never 0: BTL §7.6), or its cancellation with `None`,
    /// under the subscription's own process id ([`CovRegistry`]), which
    /// from then on only `peer` may notify under.
    pub async fn subscribe_cov(
        &self,
        peer: SocketAddr,
        instance: u32,
        object: ObjectId,
        confirmed_notifications: bool,
        lifetime: Option<Duration>,
    ) -> Result<(), ClientError> {
        let process_id = self.cov().subscribe(instance, object, peer);
        let secs = lifetime.map(|l| u32::try_from(l.as_secs().max(1)).unwrap_or(u32::MAX));
        let body = services::subscribe_cov(process_id, object, confirmed_notifications, secs);
        self.request(peer, confirmed::SUBSCRIBE_COV, &body)
            .await
            .map(|_| ())
    }

    /// WriteProperty of an object's present-value at `priority` (1-16;
    /// `None`: the device's default, 16 for commandable objects). `Ok`
    /// only on the device's SimpleACK, the one answer §15.9 gives a
    /// successful write.
    pub async fn write_property(
        &self,
        peer: SocketAddr,
        object: ObjectId,
        value: &Value,
        priority: Option<u8>,
    ) -> Result<(), ClientError> {
        self.write_property_until(peer, object, value, priority, None)
            .await
    }

    /// [`Client::write_property`], sent only before `deadline` (see
    /// [`Client::request_until`]).
    pub async fn write_property_until(
        &self,
        peer: SocketAddr,
        object: ObjectId,
        value: &Value,
        priority: Option<u8>,
        deadline: Option<Instant>,
    ) -> Result<(), ClientError> {
        let body = services::write_property(
            object,
            PropertyRef::whole(property::PRESENT_VALUE),
            value,
            priority,
        );
        match self
            .request_until(peer, confirmed::WRITE_PROPERTY, &body, deadline)
            .await?
        {
            None => Ok(()),
            Some(_) => Err(ClientError::Malformed(CodecError::Unexpected(
                "a SimpleACK",
            ))),
        }
    }

    /// Releases the command the gateway wrote at `priority` (writes NULL
    /// there, §19.2): the next slot, or relinquish-default, wins again.
    pub async fn relinquish(
        &self,
        peer: SocketAddr,
        object: ObjectId,
        priority: u8,
    ) -> Result<(), ClientError> {
        self.write_property(peer, object, &Value::Null, Some(priority))
            .await
    }
}
