//! Malformed and oversize requests, sent with a raw gRPC client (the official client cannot
//! send them): each gets a protocol error, writes nothing, and the server keeps serving.

use std::collections::HashMap;

use estore::proto::event_store::client::streams::{
    append_req, read_req, streams_client::StreamsClient, AppendReq, ReadReq,
};
use estore::proto::event_store::client::{uuid, Empty, StreamIdentifier, Uuid};
use eventstore::{Error, ExpectedRevision};
use tokio::io::AsyncWriteExt;
use tonic::transport::Channel;
use tonic::Code;

use crate::helpers::*;

async fn raw(store: &TestStore) -> StreamsClient<Channel> {
    let addr = store.server.as_ref().unwrap().local_addr();
    StreamsClient::connect(format!("http://{addr}"))
        .await
        .expect("raw connect")
}

fn options(stream: &str) -> AppendReq {
    AppendReq {
        content: Some(append_req::Content::Options(append_req::Options {
            stream_identifier: Some(StreamIdentifier {
                stream_name: stream.as_bytes().to_vec().into(),
            }),
            expected_stream_revision: Some(append_req::options::ExpectedStreamRevision::Any(
                Empty {},
            )),
        })),
    }
}

fn proposed(id: &str, metadata: &[(&str, &str)], data: usize) -> AppendReq {
    AppendReq {
        content: Some(append_req::Content::ProposedMessage(
            append_req::ProposedMessage {
                id: Some(Uuid {
                    value: Some(uuid::Value::String(id.to_string())),
                }),
                metadata: metadata
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect::<HashMap<_, _>>(),
                custom_metadata: Default::default(),
                data: vec![b'x'; data].into(),
            },
        )),
    }
}

const JSON: [(&str, &str); 2] = [
    ("type", "OrderPlaced"),
    ("content-type", "application/json"),
];

async fn raw_append(
    client: &mut StreamsClient<Channel>,
    messages: Vec<AppendReq>,
) -> Result<(), tonic::Status> {
    client
        .append(tokio_stream::iter(messages))
        .await
        .map(|_| ())
}

async fn assert_missing(store: &TestStore, stream: &str) {
    assert!(
        matches!(
            read_all_of(&store.client, stream).await,
            Err(Error::ResourceNotFound)
        ),
        "{stream} must not exist"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_appends_are_refused_and_write_nothing() {
    let store = spawn_store().await;
    let mut client = raw(&store).await;
    let good_id = ::uuid::Uuid::new_v4().to_string();
    let stream = unique_stream("bad");
    let cases: Vec<(&str, Vec<AppendReq>)> = vec![
        ("no options", vec![proposed(&good_id, &JSON, 10)]),
        (
            "bad uuid",
            vec![options(&stream), proposed("not-a-uuid", &JSON, 10)],
        ),
        (
            "no type",
            vec![
                options(&stream),
                proposed(&good_id, &[("content-type", "application/json")], 10),
            ],
        ),
        (
            "no content type",
            vec![options(&stream), proposed(&good_id, &[("type", "X")], 10)],
        ),
        ("options twice", vec![options(&stream), options(&stream)]),
        (
            "good then bad",
            vec![
                options(&stream),
                proposed(&good_id, &JSON, 10),
                proposed("zzz", &JSON, 10),
            ],
        ),
    ];
    for (case, messages) in cases {
        let error = raw_append(&mut client, messages).await.expect_err(case);
        assert_eq!(error.code(), Code::InvalidArgument, "{case}: {error:?}");
    }
    let empty_name = raw_append(&mut client, vec![options(""), proposed(&good_id, &JSON, 1)])
        .await
        .expect_err("empty name");
    assert_eq!(empty_name.code(), Code::InvalidArgument);
    let mut not_utf8 = options("x");
    if let Some(append_req::Content::Options(o)) = &mut not_utf8.content {
        o.stream_identifier = Some(StreamIdentifier {
            stream_name: vec![0xff, 0xfe].into(),
        });
    }
    assert_eq!(
        raw_append(&mut client, vec![not_utf8, proposed(&good_id, &JSON, 1)])
            .await
            .unwrap_err()
            .code(),
        Code::InvalidArgument
    );
    assert_missing(&store, &stream).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn appends_beyond_the_limits_are_refused_and_write_nothing() {
    let limits = estore::Limits {
        event_bytes_max: 1000,
        append_bytes_max: 3000,
        append_events_max: 5,
        stream_name_bytes_max: 64,
        ..estore::Limits::default()
    };
    let store = spawn_store_with(limits).await;
    let stream = unique_stream("big");
    let id = || ::uuid::Uuid::new_v4().to_string();
    let mut client = raw(&store).await;
    let too_big_event = raw_append(
        &mut client,
        vec![options(&stream), proposed(&id(), &JSON, 1001)],
    )
    .await
    .unwrap_err();
    assert_eq!(too_big_event.code(), Code::InvalidArgument);
    assert_eq!(
        too_big_event.metadata().get("exception").unwrap(),
        "maximum-append-size-exceeded"
    );
    let too_big_append = raw_append(
        &mut client,
        vec![
            options(&stream),
            proposed(&id(), &JSON, 900),
            proposed(&id(), &JSON, 900),
            proposed(&id(), &JSON, 900),
            proposed(&id(), &JSON, 900),
        ],
    )
    .await
    .unwrap_err();
    assert_eq!(too_big_append.code(), Code::InvalidArgument);
    let too_many = raw_append(
        &mut client,
        (0..6)
            .map(|_| proposed(&id(), &JSON, 1))
            .fold(vec![options(&stream)], |mut v, m| {
                v.push(m);
                v
            }),
    )
    .await
    .unwrap_err();
    assert_eq!(too_many.code(), Code::InvalidArgument);
    let long_name = "n".repeat(65);
    assert_eq!(
        raw_append(
            &mut client,
            vec![options(&long_name), proposed(&id(), &JSON, 1)]
        )
        .await
        .unwrap_err()
        .code(),
        Code::InvalidArgument
    );
    assert_missing(&store, &stream).await;
    // A gRPC message over the transport limit is refused by the framing layer.
    let huge = raw_append(
        &mut client,
        vec![options(&stream), proposed(&id(), &JSON, 200_000)],
    )
    .await
    .unwrap_err();
    assert_ne!(huge.code(), Code::Ok);
    assert_missing(&store, &stream).await;
    // Within the limits all is well.
    let ok = append(
        &store.client,
        &stream,
        ExpectedRevision::NoStream,
        (0..5).map(|n| event("OrderPlaced", n)).collect(),
    )
    .await;
    assert!(ok.is_ok(), "{ok:?}");
}

fn read_request(options: read_req::Options) -> ReadReq {
    ReadReq {
        options: Some(options),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_reads_are_refused() {
    use read_req::options::{self as o, filter_options};
    let store = spawn_store().await;
    let mut client = raw(&store).await;
    let all = || {
        Some(o::StreamOption::All(o::AllOptions {
            all_option: Some(o::all_options::AllOption::Start(Empty {})),
        }))
    };
    let base = read_req::Options {
        stream_option: all(),
        read_direction: 0,
        resolve_links: false,
        count_option: Some(o::CountOption::Count(10)),
        filter_option: Some(o::FilterOption::NoFilter(Empty {})),
        uuid_option: None,
        control_option: None,
    };
    let bad_regex = o::FilterOptions {
        filter: Some(filter_options::Filter::StreamIdentifier(
            filter_options::Expression {
                regex: "([".into(),
                prefix: vec![],
            },
        )),
        window: Some(filter_options::Window::Max(10)),
        checkpoint_interval_multiplier: 1,
    };
    let cases = vec![
        ("no options", ReadReq { options: None }),
        (
            "no target",
            read_request(read_req::Options {
                stream_option: None,
                ..base.clone()
            }),
        ),
        (
            "no count",
            read_request(read_req::Options {
                count_option: None,
                ..base.clone()
            }),
        ),
        (
            "unknown direction",
            read_request(read_req::Options {
                read_direction: 7,
                ..base.clone()
            }),
        ),
        (
            "bad regex",
            read_request(read_req::Options {
                filter_option: Some(o::FilterOption::Filter(bad_regex)),
                ..base.clone()
            }),
        ),
        (
            "backwards subscription",
            read_request(read_req::Options {
                read_direction: 1,
                count_option: Some(o::CountOption::Subscription(o::SubscriptionOptions {})),
                ..base.clone()
            }),
        ),
    ];
    for (case, request) in cases {
        let error = client.read(request).await.expect_err(case);
        assert_eq!(error.code(), Code::InvalidArgument, "{case}: {error:?}");
    }
    assert!(
        client.read(read_request(base)).await.is_ok(),
        "a good read still works"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn subscriptions_beyond_the_limit_are_refused() {
    use read_req::options as o;
    let store = spawn_store_with(estore::Limits {
        subscriptions_max: 2,
        ..estore::Limits::default()
    })
    .await;
    let mut client = raw(&store).await;
    let subscribe = read_req::Options {
        stream_option: Some(o::StreamOption::All(o::AllOptions {
            all_option: Some(o::all_options::AllOption::End(Empty {})),
        })),
        read_direction: 0,
        resolve_links: false,
        count_option: Some(o::CountOption::Subscription(o::SubscriptionOptions {})),
        filter_option: Some(o::FilterOption::NoFilter(Empty {})),
        uuid_option: None,
        control_option: None,
    };
    let first = client
        .read(read_request(subscribe.clone()))
        .await
        .expect("first");
    let second = client
        .read(read_request(subscribe.clone()))
        .await
        .expect("second");
    let third = client
        .read(read_request(subscribe.clone()))
        .await
        .expect_err("third is over the limit");
    assert_eq!(third.code(), Code::ResourceExhausted);
    drop(first);
    // The slot is given back once the server notices the client left.
    let mut again = None;
    for _ in 0..100 {
        if let Ok(s) = client.read(read_request(subscribe.clone())).await {
            again = Some(s);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(again.is_some(), "a freed slot can be taken again");
    drop(second);
}

#[tokio::test(flavor = "multi_thread")]
async fn garbage_on_the_socket_does_not_hurt_the_server() {
    let store = spawn_store().await;
    let addr = store.server.as_ref().unwrap().local_addr();
    for garbage in [
        &b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..],
        &[0u8; 4096][..],
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\xff\xff\xff\xff\xff\xff\xff\xff\xff",
    ] {
        let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
        let _ = socket.write_all(garbage).await;
        let _ = socket.shutdown().await;
    }
    // The store still serves: a new stream can be written.
    stream_with(&store, "after-garbage", 0..1).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn reads_answer_with_structured_ids_when_asked() {
    use estore::proto::event_store::client::streams::read_resp;
    use read_req::options as o;
    let store = spawn_store().await;
    let stream = unique_stream("ids");
    let id = ::uuid::Uuid::new_v4();
    append(
        &store.client,
        &stream,
        ExpectedRevision::NoStream,
        vec![event("OrderPlaced", 0).id(id)],
    )
    .await
    .unwrap();
    let mut client = raw(&store).await;
    let request = read_request(read_req::Options {
        stream_option: Some(o::StreamOption::Stream(o::StreamOptions {
            stream_identifier: Some(StreamIdentifier {
                stream_name: stream.as_bytes().to_vec().into(),
            }),
            revision_option: Some(o::stream_options::RevisionOption::Start(Empty {})),
        })),
        read_direction: 0,
        resolve_links: false,
        count_option: Some(o::CountOption::Count(1)),
        filter_option: Some(o::FilterOption::NoFilter(Empty {})),
        uuid_option: Some(o::UuidOption {
            content: Some(o::uuid_option::Content::Structured(Empty {})),
        }),
        control_option: None,
    });
    let mut responses = client.read(request).await.unwrap().into_inner();
    let first = responses.message().await.unwrap().expect("one event");
    let Some(read_resp::Content::Event(event)) = first.content else {
        panic!("an event, got {first:?}")
    };
    let (most, least) = id.as_u64_pair();
    let expected = uuid::Value::Structured(estore::proto::event_store::client::uuid::Structured {
        most_significant_bits: most as i64,
        least_significant_bits: least as i64,
    });
    assert_eq!(event.event.unwrap().id.unwrap().value, Some(expected));
}
