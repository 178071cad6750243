def test_migrated(db):
    assert db.execute("SELECT count(*) FROM refproj.connection_summaries()").fetchone() == (0,)
