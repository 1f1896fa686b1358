//! The list's filters and paging (CONTRACT §8) over both transports: a request with `tags`,
//! `status`, `pageSize` or `pageToken` is answered from [`crate::catalog::ListQuery`]; one
//! without them goes to the unchanged fast paths of [`super::reads`], so its answer stays
//! byte for byte what it was. A bad parameter is refused before the database is read.

use extend_challenge_common::pb::service as pb;

use super::{ChallengeService, Result, challenge_index};
use crate::catalog::{Catalog, ListQuery, PlayerView};
use crate::error::ServiceError;

fn plain(req: &pb::GetChallengesRequest) -> bool {
    ListQuery::is_plain(&req.tags, &req.status, req.page_size, &req.page_token)
}

impl ChallengeService {
    pub(super) fn list_query(
        &self,
        catalog: &Catalog,
        req: &pb::GetChallengesRequest,
    ) -> Result<ListQuery> {
        catalog
            .list_query(
                req.active_only,
                &req.tags,
                &req.status,
                req.page_size,
                &req.page_token,
            )
            .map_err(|e| ServiceError::InvalidArgument(e.0))
    }

    /// `GET /v1/challenges` with every query parameter, as JSON.
    pub async fn list_json(&self, user_id: &str, req: &pb::GetChallengesRequest) -> Result<String> {
        let snap = self.snapshot();
        if plain(req) {
            return self.challenges_json(user_id, req.active_only).await;
        }
        let q = self.list_query(&snap, req)?;
        let view = self.user_view(&snap, user_id).await?;
        Ok(snap.list_json(&view, &q))
    }

    /// `GetUserChallenges` as an encoded `GetChallengesResponse`.
    pub async fn list_proto(
        &self,
        user_id: &str,
        req: &pb::GetChallengesRequest,
    ) -> Result<Vec<u8>> {
        let snap = self.snapshot();
        if plain(req) {
            return self.challenges_proto(user_id, req.active_only).await;
        }
        let q = self.list_query(&snap, req)?;
        let view = self.user_view(&snap, user_id).await?;
        Ok(snap.list_proto(&view, &q))
    }

    /// `GetUserChallenges` as prost structs, with the filters and page.
    pub(super) async fn list_pb(
        &self,
        user_id: &str,
        req: &pb::GetChallengesRequest,
    ) -> Result<pb::GetChallengesResponse> {
        let snap = self.snapshot();
        let q = self.list_query(&snap, req)?;
        let view = self.user_view(&snap, user_id).await?;
        Ok(snap.list_pb(&view, &q))
    }

    /// The filters of a one-challenge request (it has no page).
    fn challenge_query(
        &self,
        catalog: &Catalog,
        req: &pb::GetChallengeRequest,
    ) -> Result<Option<ListQuery>> {
        if req.tags.is_empty() && req.status.is_empty() {
            return Ok(None);
        }
        catalog
            .list_query(req.active_only, &req.tags, &req.status, 0, "")
            .map(Some)
            .map_err(|e| ServiceError::InvalidArgument(e.0))
    }

    /// `GET /v1/challenges/{challenge_id}` with every query parameter, as JSON.
    pub async fn challenge_json_for(
        &self,
        user_id: &str,
        req: &pb::GetChallengeRequest,
    ) -> Result<String> {
        let snap = self.snapshot();
        let Some(q) = self.challenge_query(&snap, req)? else {
            return self
                .challenge_json(user_id, &req.challenge_id, req.active_only)
                .await;
        };
        let ci = challenge_index(&snap, &req.challenge_id)?;
        let rows = self.challenge_view_rows(user_id, ci).await?;
        let view = PlayerView::new(&snap, &rows, self.now());
        Ok(snap.challenge_json_filtered(ci, &view, &q))
    }

    /// `GetUserChallenge` with tags or status, as prost structs.
    pub(super) async fn filtered_challenge_pb(
        &self,
        user_id: &str,
        req: &pb::GetChallengeRequest,
    ) -> Result<Option<pb::Challenge>> {
        let snap = self.snapshot();
        let Some(q) = self.challenge_query(&snap, req)? else {
            return Ok(None);
        };
        let ci = challenge_index(&snap, &req.challenge_id)?;
        let rows = self.challenge_view_rows(user_id, ci).await?;
        let view = PlayerView::new(&snap, &rows, self.now());
        Ok(Some(snap.challenge_pb_filtered(ci, &view, &q)))
    }
}
