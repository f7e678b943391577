use crate::helpers::TestApp;

#[tokio::test]
async fn healthz_and_readyz_report_the_process_and_the_database() {
    let app = TestApp::spawn().await;
    let health = app.get("/healthz", None).await;
    assert_eq!(health.status, 200);
    assert_eq!(health.json["status"], "ok");
    let ready = app.get("/readyz", None).await;
    assert_eq!(ready.status, 200);
    assert_eq!(
        ready.json["database"],
        crate::helpers::backend().to_string()
    );
    assert_eq!(ready.json["mode"], "test");

    app.db.close().await;
    let ready = app.get("/readyz", None).await;
    assert_eq!(ready.status, 503);
    assert_eq!(ready.code(), "storage_unavailable");
    assert_eq!(app.get("/healthz", None).await.status, 200);
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_json_errors() {
    let app = TestApp::spawn().await;
    let missing = app.get("/nope", None).await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.code(), "route_not_found");
    let wrong_method = app.get("/webhooks/stripe", None).await;
    assert_eq!(wrong_method.status, 405);
    assert_eq!(wrong_method.code(), "method_not_allowed");
}
