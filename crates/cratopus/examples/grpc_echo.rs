//! A tonic gRPC server for `bench/grpc.sh`: `/bench.Echo/Unary` answers each message with
//! itself, over h2c. Built from the dev-dependencies, without protoc:
//!   cargo build --release -p cratopus --example grpc_echo
//!   target/release/examples/grpc_echo 127.0.0.1:50051

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use tonic::codegen::{Service, StdError, http};
use tonic::server::NamedService;
use tonic::{Request, Response, Status};
use tonic_prost::ProstCodec;

/// `message Msg { string text = 1; }`
#[derive(Clone, PartialEq, prost::Message)]
struct Msg {
    #[prost(string, tag = "1")]
    text: String,
}

/// The unary method as a tower service (what tonic's `UnaryService` takes).
struct EchoOne;

impl Service<Request<Msg>> for EchoOne {
    type Response = Response<Msg>;
    type Error = Status;
    type Future = std::future::Ready<Result<Response<Msg>, Status>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Status>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Msg>) -> Self::Future {
        std::future::ready(Ok(Response::new(req.into_inner())))
    }
}

#[derive(Clone)]
struct Echo;

impl NamedService for Echo {
    const NAME: &'static str = "bench.Echo";
}

impl<B> Service<http::Request<B>> for Echo
where
    B: tonic::codegen::Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(ProstCodec::<Msg, Msg>::default());
            Ok(match req.uri().path() {
                "/bench.Echo/Unary" => grpc.unary(EchoOne, req).await,
                _ => Status::unimplemented("no such method").into_http(),
            })
        })
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:50051".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    eprintln!("grpc_echo listening on {addr}");
    tonic::transport::Server::builder()
        .add_service(Echo)
        .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener))
        .await?;
    Ok(())
}
