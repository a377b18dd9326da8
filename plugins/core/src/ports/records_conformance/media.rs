//! The media records port's checks.

use super::Ports;
use crate::ports::log::Intent;
use crate::ports::media::{ContentRecord, MediaChange, MediaMeta, MediaRecord};

/// A SHA-256 in hex made of `byte` repeated.
pub fn sha(byte: &str) -> String {
    byte.repeat(32)
}

/// Writes `record` and its owner entry (`uploader` got it for its content) together.
pub fn upload(ports: &Ports, record: &MediaRecord) {
    ports
        .media
        .write(vec![
            MediaChange::Media(record.clone()),
            MediaChange::Owner {
                sha256: record.sha256.clone(),
                user: record.uploader.clone(),
                media: record.id.clone(),
            },
        ])
        .expect("write");
}

/// Records are read back by id and replaced whole; owner entries by content and user.
pub fn media_records_and_owners_round_trip(ports: &Ports) {
    let m = &ports.media;
    let sha = sha("ab");
    let mut record = MediaRecord::pending("alice", &sha, 10, "image/png", 5);
    assert_eq!(m.media(&record.id).unwrap(), None);
    assert_eq!(m.owner_media(&sha, "alice").unwrap(), None);
    assert!(m.owners(&sha, 10).unwrap().is_empty());
    upload(ports, &record);
    m.flush().unwrap();
    assert_eq!(m.media(&record.id).unwrap(), Some(record.clone()));
    assert_eq!(
        m.owner_media(&sha, "alice").unwrap().as_deref(),
        Some(record.id.as_str())
    );
    assert_eq!(m.owner_media(&sha, "bob").unwrap(), None);
    assert_eq!(
        m.owner_media(&super::media::sha("cd"), "alice").unwrap(),
        None
    );
    assert_eq!(m.owners(&sha, 10).unwrap(), vec![record.id.clone()]);
    // Nothing verified yet.
    assert_eq!(m.content(&sha).unwrap(), None);

    record.mark_verified(8);
    m.write(vec![MediaChange::Media(record.clone())]).unwrap();
    assert_eq!(m.media(&record.id).unwrap(), Some(record.clone()));

    // Another uploader of the same content gets an id of their own; owners are listed up
    // to the limit, in user order.
    let other = MediaRecord::pending("bob", &sha, 10, "image/png", 6);
    upload(ports, &other);
    assert_eq!(
        m.owners(&sha, 10).unwrap(),
        vec![record.id.clone(), other.id.clone()]
    );
    assert_eq!(m.owners(&sha, 1).unwrap(), vec![record.id.clone()]);
    assert!(m.owners(&super::media::sha("cd"), 10).unwrap().is_empty());
}

/// A record's metadata — a preview as large as the service takes included — reads back as
/// written, is replaced whole with the record, and a record without it reads back without it.
pub fn media_metadata_round_trips(ports: &Ports) {
    let m = &ports.media;
    let mut record = MediaRecord::pending("alice", &sha("ab"), 10, "image/png", 5);
    let preview = format!(
        "data:image/png;base64,{}",
        "A".repeat(16_384 - "data:image/png;base64,".len())
    );
    record.meta = MediaMeta {
        name: Some("holiday é 1.png".into()),
        width: Some(100_000),
        height: Some(1),
        duration: Some(86_400_000),
        preview: Some(preview),
    };
    upload(ports, &record);
    m.flush().unwrap();
    assert_eq!(m.media(&record.id).unwrap(), Some(record.clone()));

    record.mark_verified(8);
    record.meta = MediaMeta {
        name: Some("b.png".into()),
        ..MediaMeta::default()
    };
    m.write(vec![MediaChange::Media(record.clone())]).unwrap();
    assert_eq!(m.media(&record.id).unwrap(), Some(record.clone()));

    let plain = MediaRecord::pending("bob", &sha("ab"), 10, "image/png", 6);
    upload(ports, &plain);
    m.flush().unwrap();
    let back = m.media(&plain.id).unwrap().expect("bob's record");
    assert!(back.meta.is_empty(), "{back:?}");
    assert_eq!(back, plain);
}

/// The first verified content's record stays when another upload of the same bytes verifies.
pub fn the_first_verified_content_stays(ports: &Ports) {
    let m = &ports.media;
    let sha = sha("ab");
    let mut record = MediaRecord::pending("alice", &sha, 10, "image/png", 5);
    record.mark_verified(8);
    let first = ContentRecord::from_media(&record, 8);
    m.write(vec![MediaChange::ContentIfAbsent(first.clone())])
        .unwrap();
    let mut second = first.clone();
    second.uploader = "bob".into();
    second.mime = "image/jpeg".into();
    // Twice in one write as well.
    m.write(vec![
        MediaChange::ContentIfAbsent(second.clone()),
        MediaChange::ContentIfAbsent(second),
    ])
    .unwrap();
    m.flush().unwrap();
    assert_eq!(m.content(&sha).unwrap(), Some(first));
}

/// A user may download exactly the media that a committed message gave them.
pub fn download_rights_are_the_ones_the_log_wrote(ports: &Ports) {
    let m = &ports.media;
    assert!(!m.may_download("m_1", "bob").unwrap());
    ports.commit(vec![
        Intent::MediaRight {
            media: "m_1".into(),
            user: "bob".into(),
        },
        Intent::MediaRight {
            media: "m_1".into(),
            user: "alice".into(),
        },
    ]);
    assert!(m.may_download("m_1", "bob").unwrap());
    assert!(m.may_download("m_1", "alice").unwrap());
    assert!(!m.may_download("m_1", "carol").unwrap());
    assert!(!m.may_download("m_2", "bob").unwrap());
}
