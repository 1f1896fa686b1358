//! Generated protobuf and gRPC code. The AccelByte async-API protos are vendored verbatim
//! under `proto/`; `service.proto` is ours, wire-compatible with the Go reference.

#![allow(clippy::all, clippy::pedantic, missing_docs)]

/// Encoded `FileDescriptorSet` of every compiled proto, for gRPC reflection and for
/// reading `google.api.http` annotations at run time.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/descriptor.bin"));

pub mod accelbyte {
    pub mod iam {
        pub mod account {
            pub mod v1 {
                tonic::include_proto!("accelbyte.iam.account.v1");
            }
        }
    }
    pub mod social {
        pub mod statistic {
            pub mod v1 {
                tonic::include_proto!("accelbyte.social.statistic.v1");
            }
        }
    }
}

pub mod google {
    pub mod api {
        tonic::include_proto!("google.api");
    }
}

/// The player API (`package service`).
pub mod service {
    tonic::include_proto!("service");
    include!(concat!(env!("OUT_DIR"), "/service.serde.rs"));
}
