//! 1:1 messaging end to end.
mod support;

use rumqttc::QoS;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smoke() {
    let s = Server::start();
    s.add_user("alice", "pw-a");
    s.add_user("bob", "pw-b");
    let mut a = connect(s.mqtt, "alice", "alice", "pw-a").await;
    let mut b = connect(s.mqtt, "bob:phone", "bob", "pw-b").await;
    println!("{:?}", a.subscribe("user/alice/#", QoS::AtLeastOnce).await);
    println!("{:?}", b.subscribe("user/bob/inbox", QoS::AtLeastOnce).await);
    let ack = a.send("alice", "bob", "c1", "hi").await;
    println!("{ack}");
    let m = b.next_on("user/bob/inbox").await;
    println!("{m}");
    let h = a.rpc("alice", serde_json::json!({"rid":"r1","op":"history","with":"bob"})).await;
    println!("{h}");
    let mut a5 = connect5(s.mqtt, "alice:v5", "alice", "pw-a").await;
    println!("{:?}", a5.subscribe("user/alice/#", rumqttc::v5::mqttbytes::QoS::AtLeastOnce).await);
    println!("{:?}", a5.publish_result("chat/bob/send", "{}").await);
    println!("{}", a5.send("alice", "bob", "c2", "hi2").await);
    println!("{}", b.next_on("user/bob/inbox").await);
    b.disconnect().await;
    let mut s = s;
    println!("{:?}", s.stop());
    s.restart();
    println!("{}", s.log());
}
