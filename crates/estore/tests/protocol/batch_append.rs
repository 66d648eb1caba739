use eventstore::{BatchAppendOptions, Error, ExpectedRevision};

use crate::helpers::*;

#[tokio::test(flavor = "multi_thread")]
async fn batch_append_writes_many_streams_over_one_call() {
    let store = spawn_store().await;
    let batch = within(
        "open batch",
        store.client.batch_append(&BatchAppendOptions::default()),
    )
    .await
    .expect("batch append is supported");
    let prefix = unique_stream("batch");
    let mut results = Vec::new();
    for i in 0..20u64 {
        let stream = format!("{prefix}-{}", i % 4);
        let result = within(
            "batch",
            batch.append_to_stream(
                stream,
                ExpectedRevision::Any,
                vec![event("OrderPlaced", i), event("OrderClosed", i)],
            ),
        )
        .await
        .expect("batch write");
        results.push(result);
    }
    assert_eq!(results.last().unwrap().current_revision(), Some(9));
    for s in 0..4 {
        let events = read_all_of(&store.client, &format!("{prefix}-{s}"))
            .await
            .unwrap();
        assert_eq!(events.len(), 10);
    }
    let wrong = within(
        "wrong",
        batch.append_to_stream(
            format!("{prefix}-0"),
            ExpectedRevision::NoStream,
            vec![event("OrderPlaced", 99)],
        ),
    )
    .await;
    assert!(
        matches!(
            wrong,
            Err(Error::Grpc {
                code: tonic::Code::AlreadyExists,
                ..
            })
        ),
        "{wrong:?}"
    );
    assert_eq!(
        read_all_of(&store.client, &format!("{prefix}-0"))
            .await
            .unwrap()
            .len(),
        10
    );
}
