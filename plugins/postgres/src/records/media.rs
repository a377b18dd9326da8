//! The media records port: `media` (records by id), `media_contents` (verified contents by
//! SHA-256), `media_owners` (the media id each uploader got for a content) and the download
//! rights `media_rights` that the log's commits write (read here).

use chatd_core::ports::accounts::RecordError;
use chatd_core::ports::media::{ContentRecord, MediaChange, MediaRecord, MediaRecords};

use tokio_postgres::types::ToSql;

use super::{decode, encode, sql_limit, Records};
use crate::error::PgError;

const MEDIA: &str = "SELECT record FROM media WHERE media = $1";
const CONTENT: &str = "SELECT record FROM media_contents WHERE sha256 = $1";
const OWNER: &str = "SELECT media FROM media_owners WHERE user_id = $1 AND sha256 = $2";
const OWNERS: &str = "SELECT media FROM media_owners WHERE sha256 = $1 ORDER BY user_id LIMIT $2";
const MAY_DOWNLOAD: &str = "SELECT media FROM media_rights WHERE user_id = $1 AND media = $2";
const PUT_MEDIA: &str = "INSERT INTO media (media, record) VALUES ($1, $2) \
                         ON CONFLICT (media) DO UPDATE SET record = EXCLUDED.record";
const PUT_OWNER: &str = "INSERT INTO media_owners (user_id, sha256, media) VALUES ($1, $2, $3) \
                         ON CONFLICT (user_id, sha256) DO UPDATE SET media = EXCLUDED.media";
/// The first uploader's declaration stays.
const PUT_CONTENT: &str =
    "INSERT INTO media_contents (sha256, record) VALUES ($1, $2) ON CONFLICT DO NOTHING";

/// Media metadata kept in PostgreSQL.
#[derive(Clone)]
pub struct PostgresMedia {
    pub(crate) records: Records,
}

impl PostgresMedia {
    /// The text column of the row `sql` finds with the text `params`, if any.
    fn text(&self, sql: &'static str, params: Vec<String>) -> Result<Option<String>, PgError> {
        self.records.call(|c| async move {
            let mut s = c.reader().await?;
            let st = s.statement(sql).await?;
            let params: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p as _).collect();
            let row = s.client.query_opt(&st, &params).await?;
            Ok(row.map(|r| r.try_get(0)).transpose()?)
        })
    }
}

impl MediaRecords for PostgresMedia {
    fn media(&self, media: &str) -> Result<Option<MediaRecord>, RecordError> {
        let text = self.text(MEDIA, vec![media.to_string()])?;
        let what = format!("media record {media}");
        Ok(text.map(|t| decode(&t, &what)).transpose()?)
    }

    fn content(&self, sha256: &str) -> Result<Option<ContentRecord>, RecordError> {
        let text = self.text(CONTENT, vec![sha256.to_string()])?;
        let what = format!("content record {sha256}");
        Ok(text.map(|t| decode(&t, &what)).transpose()?)
    }

    fn owner_media(&self, sha256: &str, user: &str) -> Result<Option<String>, RecordError> {
        Ok(self.text(OWNER, vec![user.to_string(), sha256.to_string()])?)
    }

    fn owners(&self, sha256: &str, limit: usize) -> Result<Vec<String>, RecordError> {
        let sha256 = sha256.to_string();
        Ok(self.records.call(|c| async move {
            let mut s = c.reader().await?;
            let st = s.statement(OWNERS).await?;
            let rows = s.client.query(&st, &[&sha256, &sql_limit(limit)]).await?;
            rows.iter().map(|r| Ok(r.try_get(0)?)).collect()
        })?)
    }

    fn may_download(&self, media: &str, user: &str) -> Result<bool, RecordError> {
        let params = vec![user.to_string(), media.to_string()];
        Ok(self.text(MAY_DOWNLOAD, params)?.is_some())
    }

    fn write(&self, changes: Vec<MediaChange>) -> Result<(), RecordError> {
        Ok(self.records.call(|c| async move {
            let mut s = c.writer().await?;
            let (put_media, put_owner, put_content) = (
                s.statement(PUT_MEDIA).await?,
                s.statement(PUT_OWNER).await?,
                s.statement(PUT_CONTENT).await?,
            );
            let tx = s.client.transaction().await?;
            for change in changes {
                match change {
                    MediaChange::Media(record) => {
                        let text = encode(&record, "media record")?;
                        tx.execute(&put_media, &[&record.id, &text]).await?;
                    }
                    MediaChange::Owner {
                        sha256,
                        user,
                        media,
                    } => {
                        tx.execute(&put_owner, &[&user, &sha256, &media]).await?;
                    }
                    MediaChange::ContentIfAbsent(content) => {
                        let text = encode(&content, "content record")?;
                        tx.execute(&put_content, &[&content.sha256, &text]).await?;
                    }
                }
            }
            tx.commit().await?;
            Ok::<_, PgError>(())
        })?)
    }

    fn flush(&self) -> Result<(), RecordError> {
        // Every write committed durably before it returned.
        Ok(())
    }
}
