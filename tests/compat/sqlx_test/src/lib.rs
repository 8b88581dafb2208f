//! Minimal helpers with the interface the sqlx MySQL tests expect from `sqlx_test`
//! (written for myveil's compatibility harness; only what tests/mysql/*.rs use).

/// Loads `.env` (if any) and sets up logging once.
pub fn setup_if_needed() {
    dotenvy::dotenv().ok();
    env_logger::builder().is_test(true).try_init().ok();
}

/// A new connection to `DATABASE_URL`.
pub async fn new<DB: sqlx::Database>() -> anyhow::Result<DB::Connection> {
    use sqlx::Connection;
    setup_if_needed();
    let url = std::env::var("DATABASE_URL")?;
    Ok(<DB::Connection as Connection>::connect(&url).await?)
}

/// The prepared-statement check query for MySQL: column 0 says whether the bound value
/// equals the SQL literal, column 1 is the literal, column 2 the bound value echoed back.
#[macro_export]
macro_rules! MySql_query_for_test_prepared_type {
    () => {
        "SELECT CAST({0} <=> ? AS SIGNED INTEGER), {0}, ?"
    };
}

/// `test_type!(name<Ty>(Db, [sql,] "literal" == value, ...))`: one prepared and one
/// unprepared test per type (`test_prepared_type_NAME`, `test_unprepared_type_NAME`).
#[macro_export]
macro_rules! test_type {
    ($name:ident<$ty:ty>($db:ident, $sql:literal, $($text:literal == $value:expr),+ $(,)?)) => {
        $crate::__prepared!($name<$ty>($db, $sql, $($text == $value),+));
        $crate::test_unprepared_type!($name<$ty>($db, $($text == $value),+));
    };
    ($name:ident<$ty:ty>($db:ident, $($text:literal == $value:expr),+ $(,)?)) => {
        paste::item! {
            $crate::__prepared!($name<$ty>($db, $crate::[<$db _query_for_test_prepared_type>]!(), $($text == $value),+));
        }
        $crate::test_unprepared_type!($name<$ty>($db, $($text == $value),+));
    };
    ($name:ident($db:ident, $($text:literal == $value:expr),+ $(,)?)) => {
        $crate::test_type!($name<$name>($db, $($text == $value),+));
    };
}

/// Prepared-statement variant only.
#[macro_export]
macro_rules! test_prepared_type {
    ($name:ident<$ty:ty>($db:ident, $sql:literal, $($text:literal == $value:expr),+ $(,)?)) => {
        $crate::__prepared!($name<$ty>($db, $sql, $($text == $value),+));
    };
    ($name:ident<$ty:ty>($db:ident, $($text:literal == $value:expr),+ $(,)?)) => {
        paste::item! {
            $crate::__prepared!($name<$ty>($db, $crate::[<$db _query_for_test_prepared_type>]!(), $($text == $value),+));
        }
    };
    ($name:ident($db:ident, $($text:literal == $value:expr),+ $(,)?)) => {
        $crate::test_prepared_type!($name<$name>($db, $($text == $value),+));
    };
}

/// Text-protocol variant: `SELECT literal` decoded as the type.
#[macro_export]
macro_rules! test_unprepared_type {
    ($name:ident<$ty:ty>($db:ident, $($text:literal == $value:expr),+ $(,)?)) => {
        paste::item! {
            #[sqlx_macros::test]
            async fn [<test_unprepared_type_ $name>]() -> anyhow::Result<()> {
                use futures::TryStreamExt;
                use sqlx::prelude::*;
                let mut conn = sqlx_test::new::<$db>().await?;
                $({
                    let sql = format!("SELECT {}", $text);
                    let mut rows = conn.fetch(&*sql);
                    let row = rows.try_next().await?.expect("no row");
                    let got = row.try_get::<$ty, _>(0)?;
                    assert_eq!($value, got, "{}", sql);
                })+
                Ok(())
            }
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __prepared {
    ($name:ident<$ty:ty>($db:ident, $sql:expr, $($text:literal == $value:expr),+ $(,)?)) => {
        paste::item! {
            #[sqlx_macros::test]
            async fn [<test_prepared_type_ $name>]() -> anyhow::Result<()> {
                use sqlx::Row;
                let mut conn = sqlx_test::new::<$db>().await?;
                $({
                    let sql = format!($sql, $text);
                    let row = sqlx::query(&sql).bind($value).bind($value).fetch_one(&mut conn).await?;
                    let same: i32 = row.try_get(0)?;
                    let literal: $ty = row.try_get(1)?;
                    let echoed: $ty = row.try_get(2)?;
                    assert!(same != 0, "{}: bound value {:?} differs from the literal ({:?}, echoed {:?})",
                            sql, $value, literal, echoed);
                    assert_eq!($value, literal, "{}: literal", sql);
                    assert_eq!($value, echoed, "{}: echoed bind", sql);
                })+
                Ok(())
            }
        }
    };
}
