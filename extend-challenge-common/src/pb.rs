//! Generated protobuf and gRPC code. The AccelByte async-API protos are vendored verbatim
//! under `proto/`; `service.proto` is ours, wire-compatible with the Go reference.

#![allow(clippy::all, clippy::pedantic, missing_docs)]

/// Encoded `FileDescriptorSet` of every compiled proto, for gRPC reflection and for
/// reading `google.api.http` annotations at run time.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/descriptor.bin"));

pub mod codec {
    //! The codec of the AsyncAPI services (see `build.rs`): prost encoding and decoding,
    //! except that a message that does not decode is `InvalidArgument`, not `Internal`.
    //! gRPC's status guide reserves `Internal` for broken invariants, and the Extend
    //! platform retries it: a poison message would be redelivered forever.

    use tonic::Status;
    use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder};
    use tonic_prost::{ProstCodec, ProstDecoder};

    /// [`ProstCodec`] whose decode errors are `InvalidArgument`.
    pub struct InvalidArgumentCodec<T, U>(ProstCodec<T, U>);

    impl<T, U> Default for InvalidArgumentCodec<T, U> {
        fn default() -> Self {
            Self(ProstCodec::default())
        }
    }

    impl<T, U> Codec for InvalidArgumentCodec<T, U>
    where
        T: prost::Message + Send + 'static,
        U: prost::Message + Default + Send + 'static,
    {
        type Encode = T;
        type Decode = U;
        type Encoder = <ProstCodec<T, U> as Codec>::Encoder;
        type Decoder = InvalidArgumentDecoder<U>;

        fn encoder(&mut self) -> Self::Encoder {
            self.0.encoder()
        }

        fn decoder(&mut self) -> Self::Decoder {
            InvalidArgumentDecoder(self.0.decoder())
        }
    }

    /// [`ProstDecoder`] whose errors are `InvalidArgument`.
    pub struct InvalidArgumentDecoder<U>(ProstDecoder<U>);

    impl<U: prost::Message + Default> Decoder for InvalidArgumentDecoder<U> {
        type Item = U;
        type Error = Status;

        fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
            self.0.decode(buf).map_err(|e| {
                Status::invalid_argument(format!("the message does not decode: {}", e.message()))
            })
        }

        fn buffer_settings(&self) -> BufferSettings {
            self.0.buffer_settings()
        }
    }
}

pub mod accelbyte {
    // The deployment guide's generic envelope, `accelbyte.EventHandler` (ours).
    tonic::include_proto!("accelbyte");

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
