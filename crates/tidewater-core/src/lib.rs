//! Source-neutral core of tidewater: the change model, source positions, the source driver
//! and `Sink` contracts and the apply loop that batches whole source transactions into sink commits.
//! No database driver appears here.

pub mod apply;
pub mod backlog;
pub mod check;
pub mod config;
pub mod copy;
pub mod copy_eta;
pub mod copy_rows;
pub mod driver;
pub mod error;
pub mod event;
pub mod glob;
pub mod histogram;
pub mod model;
pub mod recopy;
pub mod redact;
pub mod replica;
pub mod sink;
pub mod source;
pub mod split;
pub mod sql;
pub mod stats;
pub mod time;
pub mod uncarried;
pub mod unreplicated;

pub use config::Secret;
pub use copy::{ChunkedCopy, CopyProgress};
pub use driver::{ConsistentReader, SourceDriver};
pub use error::{Error, ErrorKind, Result};
pub use event::{Backlog, SourceEvent, TxInfo};
pub use model::{Change, ChangeKind, Column, ColumnType, Position, TableId, TableSchema, Value};
pub use recopy::RecopyRequests;
pub use replica::{Replica, ReplicaCapabilities};
pub use sink::{PipelineState, Sink};
pub use source::{RowConsumer, Source, SourceContext};
pub use split::PartialTx;
pub use unreplicated::Unreplicated;
