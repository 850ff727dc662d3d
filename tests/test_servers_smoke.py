from tests.servers import PostgresServer, RedisServer


def test_postgres_fixture_serves_queries(postgres: PostgresServer) -> None:
    assert postgres.psql("select 1 + 1") == "2"


def test_redis_fixture_answers_ping(redis_server: RedisServer) -> None:
    assert redis_server.cli("ping") == "PONG"
