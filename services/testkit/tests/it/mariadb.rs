//! Throwaway MariaDB: isolation between instances and between databases, restarts, crashes.

use std::time::{Duration, Instant};

use sqlx::mysql::MySqlConnection;
use sqlx::{Connection, Row};
use testkit::{Error, MariaDb};

async fn connect(url: &str) -> MySqlConnection {
    MySqlConnection::connect(url).await.unwrap()
}

async fn count_rows(url: &str, table: &str) -> i64 {
    let mut conn = connect(url).await;
    let row = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}")))
        .fetch_one(&mut conn)
        .await
        .unwrap();
    row.get::<i64, _>(0)
}

/// Two instances start in parallel on different ports with separate data, and inside one instance a
/// service user can use its own database but cannot read or even see another service's database.
#[tokio::test]
async fn parallel_instances_and_users_are_isolated() {
    let started = Instant::now();
    let (a, b) = tokio::join!(MariaDb::start(), MariaDb::start());
    let (a, b) = (a.unwrap(), b.unwrap());
    println!("two instances started in {:?}", started.elapsed());
    assert_ne!(a.port(), b.port());
    assert_ne!(a.dir(), b.dir());

    let orders = a.create_database("orders").await.unwrap();
    let inventory = a.create_database("inventory").await.unwrap();
    let orders_on_b = b.create_database("orders").await.unwrap();
    assert!(orders.url.starts_with("mysql://orders:"));
    assert!(
        orders
            .url
            .ends_with(&format!("@127.0.0.1:{}/orders", a.port()))
    );
    assert_ne!(orders.password, orders_on_b.password);

    let mut conn = connect(&orders.url).await;
    sqlx::raw_sql("CREATE TABLE t (id INT PRIMARY KEY); INSERT INTO t VALUES (1), (2)")
        .execute(&mut conn)
        .await
        .unwrap();
    assert_eq!(count_rows(&orders.url, "t").await, 2);

    // Another service's user on the same server: no access to the data, not even the name.
    let mut other = connect(&inventory.url).await;
    let denied = sqlx::query("SELECT * FROM orders.t")
        .fetch_all(&mut other)
        .await
        .unwrap_err();
    let code = denied
        .as_database_error()
        .and_then(|e| e.code())
        .map(|c| c.into_owned());
    assert_eq!(code.as_deref(), Some("42000"), "{denied}");
    let visible: Vec<String> = sqlx::query_scalar("SHOW DATABASES")
        .fetch_all(&mut other)
        .await
        .unwrap();
    assert!(visible.contains(&"inventory".to_string()));
    assert!(!visible.contains(&"orders".to_string()), "{visible:?}");
    // A service user cannot create databases outside its own.
    assert!(
        sqlx::raw_sql("CREATE DATABASE sneaky")
            .execute(&mut other)
            .await
            .is_err()
    );

    // The same names on the other instance hold other data: the table does not exist there.
    let mut on_b = connect(&orders_on_b.url).await;
    assert!(
        sqlx::query("SELECT * FROM t")
            .fetch_all(&mut on_b)
            .await
            .is_err()
    );
    // And instance A's credentials do not open instance B.
    let cross = orders
        .url
        .replace(&a.port().to_string(), &b.port().to_string());
    assert!(MySqlConnection::connect(&cross).await.is_err());

    // The administrator URL works and sees both service databases.
    let mut root = connect(&a.url_root()).await;
    let all: Vec<String> = sqlx::query_scalar("SHOW DATABASES")
        .fetch_all(&mut root)
        .await
        .unwrap();
    assert!(all.contains(&"orders".to_string()) && all.contains(&"inventory".to_string()));
}

/// A graceful stop keeps data and port: clients fail while it is down and work again after
/// start_again; a SIGKILL loses no committed row either (InnoDB crash recovery).
#[tokio::test]
async fn stop_and_kill_keep_data_and_port() {
    let mut db = MariaDb::start().await.unwrap();
    let access = db.create_database("inventory").await.unwrap();
    let mut conn = connect(&access.url).await;
    sqlx::raw_sql("CREATE TABLE stock (sku VARCHAR(20) PRIMARY KEY, qty INT); INSERT INTO stock VALUES ('a', 5)")
        .execute(&mut conn)
        .await
        .unwrap();
    drop(conn);
    let port = db.port();
    let first_pid = db.pid().unwrap();

    let stopping = Instant::now();
    db.stop().await.unwrap();
    println!("graceful stop took {:?}", stopping.elapsed());
    assert!(db.pid().is_none());
    assert!(MySqlConnection::connect(&access.url).await.is_err());
    assert!(matches!(
        db.create_database("x").await,
        Err(Error::NotRunning(_))
    ));

    let restarting = Instant::now();
    db.start_again().await.unwrap();
    println!("start_again after stop took {:?}", restarting.elapsed());
    assert_eq!(db.port(), port);
    assert_ne!(db.pid(), Some(first_pid));
    assert_eq!(count_rows(&access.url, "stock").await, 1);

    let mut conn = connect(&access.url).await;
    sqlx::raw_sql("INSERT INTO stock VALUES ('b', 7)")
        .execute(&mut conn)
        .await
        .unwrap();
    drop(conn);
    db.kill().await.unwrap();
    assert!(MySqlConnection::connect(&access.url).await.is_err());
    let recovering = Instant::now();
    db.start_again().await.unwrap();
    println!("start_again after kill took {:?}", recovering.elapsed());
    assert_eq!(count_rows(&access.url, "stock").await, 2);
}

/// Dropping the handle kills the server and deletes its directory.
#[tokio::test]
async fn drop_removes_server_and_data() {
    let db = MariaDb::start().await.unwrap();
    let dir = db.dir().to_path_buf();
    let pid = db.pid().unwrap();
    let url = db.url_root();
    assert!(dir.join("data/mysql").is_dir());
    drop(db);
    assert!(!dir.exists(), "{} left behind", dir.display());
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists() || zombie(pid));
    let refused =
        tokio::time::timeout(Duration::from_secs(5), MySqlConnection::connect(&url)).await;
    assert!(matches!(refused, Ok(Err(_))));
}

/// Bad database names are refused before they reach SQL.
#[tokio::test]
async fn create_database_refuses_unsafe_names() {
    let db = MariaDb::start().await.unwrap();
    let err = db.create_database("a`b").await.unwrap_err();
    assert!(matches!(err, Error::InvalidName { .. }), "{err}");
}

fn zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit(')')
            .next()
            .is_some_and(|r| r.trim_start().starts_with('Z'))
    })
}
