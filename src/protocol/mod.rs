//! The AMQP 0-9-1 wire: frames, methods, content properties, field tables,
//! reply codes and the protocol error type. Nothing here knows about queues
//! or connections.

pub mod error;
pub mod frame;
pub mod method;
pub mod properties;
pub mod reply;
pub mod table;

pub use error::{AmqpError, AmqpResult};
pub use frame::{Frame, FrameBuf, FrameCodec, FrameError};
pub use method::Method;
pub use properties::Properties;
pub use reply::ReplyCode;
